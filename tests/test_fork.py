"""A fork that replaces orders with its own dataset, as docs/add-a-dataset.md tells it to: synth
names the shipped SQL that reads orders, and once those files are gone the lake synthesizes with
every component on and nothing of orders left in it."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cfn_resolve import ACCOUNT, REGION
from lake_app import SECOND_DATASET, TWO_DATASETS, build

from config import get_stage
from datalake import sql
from datalake.dataset import load_dataset


def test_a_fork_that_replaces_orders_is_told_which_sql_to_remove_then_synthesizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a fork whose only dataset file is its own, with the shipped SQL still in place, in an
    # account bootstrapped with CDK's example permissions boundary (which refuses a role without it)
    # and a tag policy that asks for a cost centre, its dataset sent by a role of another account
    fork_sql = tmp_path / "sql"
    shutil.copytree(sql.SQL_DIR, fork_sql)
    monkeypatch.setattr(sql, "SQL_DIR", fork_sql)
    every_component = {k: v for k, v in TWO_DATASETS.items() if k != "extra_datasets"}
    boundary = f"cdk-${{Qualifier}}-permissions-boundary-{ACCOUNT}-{REGION}"
    datasets = (load_dataset(SECOND_DATASET),)
    producer = "arn:aws:iam::111122223333:role/web-storefront"
    stage = replace(
        get_stage("prod").with_features(**every_component),
        permissions_boundary=boundary,
        tags={"cost-center": "cc-1234"},
        producers={datasets[0].name: (producer,)},
    )

    # WHEN it synthesizes, THEN synth stops and names each file that reads orders, and only those
    with pytest.raises(ValueError, match="no dataset file declares") as refused:
        build(stage, datasets)
    named = sorted(set(re.findall(r"sql/(\S+\.sql) reads table 'orders'", str(refused.value))))
    readers = sorted(
        f"{engine}/{f.path.name}"
        for engine in ("athena", "redshift")
        for f in sql.load(engine)
        if "orders" in f.text
    )
    assert named == readers
    assert "redshift/01_external_schema.sql" not in named and "redshift/02_roles.sql" not in named

    # WHEN the fork deletes the files it was told to, THEN every stack synthesizes, passing every
    # compliance pack (build raises on a finding), with no warning from CDK
    for relative in named:
        (fork_sql / relative).unlink()
    synth = build(stage, datasets)
    assert len(synth.lake.stacks) == 7
    assert synth.cdk_findings() == []
    # AND nothing in any template still names orders (no hard-coded example left behind), while
    # the fork's dataset has resources in every stack that holds one per dataset
    # (the test dataset's own description mentions orders.json: left out of the search)
    templates = {
        name: json.dumps(template).replace(datasets[0].description, "")
        for name, template in synth.all_templates().items()
    }
    assert [name for name, text in templates.items() if "orders" in text.lower()] == []
    for stack in ("ingestion", "processing", "catalog", "governance", "consumption", "observability"):
        assert datasets[0].construct_id in templates[f"lake-prd-{stack}"], stack
    # AND every role of every stack, those of CDK's own custom-resource functions too, has the
    # boundary, the bootstrap qualifier filled in
    policy = f"arn:aws:iam::{ACCOUNT}:policy/cdk-hnb659fds-permissions-boundary-{ACCOUNT}-{REGION}"
    boundaries = {
        (stack.stack_name, logical_id): synth.resolved(stack, role["Properties"].get("PermissionsBoundary"))
        for stack in synth.lake.stacks
        for logical_id, role in synth.template(stack).find_resources("AWS::IAM::Role").items()
    }
    assert {stack for stack, _ in boundaries} == {
        f"lake-prd-{stack}"
        for stack in ("foundation", "governance", "ingestion", "processing", "consumption")
    }
    assert {key for key, arn in boundaries.items() if arn != policy} == set()
    assert any("CustomResourceProviderRole" in logical_id for _, logical_id in boundaries)
    assert [t for t in templates.values() if "AWS::IAM::User" in t] == []
    # AND its producer role trusts the producer the stage names, and nothing else
    (trust,) = [
        role["Properties"]["AssumeRolePolicyDocument"]
        for role in synth.template(synth.lake.ingestion).find_resources("AWS::IAM::Role").values()
        if role["Properties"].get("RoleName", "").endswith("-producer")
    ]
    assert [st["Principal"] for st in trust["Statement"]] == [{"AWS": producer}]
    # AND every resource that takes tags has the cost centre beside the lake's own; the dataset's
    # stream, transform, job, crawler, pipeline and roles are tagged with its name
    tagged = {
        (stack.stack_name, logical_id): (resource["Type"], _tags(resource["Properties"]["Tags"]))
        for stack in synth.lake.stacks
        for logical_id, resource in synth.template_json(stack)["Resources"].items()
        if "Tags" in resource.get("Properties", {})
    }
    assert len(tagged) > 50
    assert {key for key, (_, tags) in tagged.items() if tags.get("cost-center") != "cc-1234"} == set()
    assert {key for key, (_, tags) in tagged.items() if tags.get("project") != "governed-data-lake"} == set()
    of_dataset = {type_ for type_, tags in tagged.values() if tags.get("dataset") == datasets[0].name}
    assert of_dataset >= {
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Lambda::Function",
        "AWS::Glue::Job",
        "AWS::Glue::Crawler",
        "AWS::StepFunctions::StateMachine",
        "AWS::IAM::Role",
    }
    # AND with the orders' refresh procedures gone, the warehouse has nothing to refresh: no
    # schedule calls a procedure that no longer exists
    assert synth.lake.consumption.warehouse is not None
    assert synth.lake.consumption.warehouse.refresh is None
    assert "warehouse-refresh" not in templates["lake-prd-consumption"]
    # and its row of the dashboard has no graph of refreshes: three graphs across its 24 columns
    _, row = synth.dashboard_row("Warehouse")
    assert [w["width"] for w in row] == [8, 8, 8]
    assert not [w for w in row if "refreshes" in w["properties"].get("title", "")]


def test_the_sql_check_reads_what_a_file_queries_not_what_its_comments_say(tmp_path: Path) -> None:
    # GIVEN a fork's SQL: an Athena query and a Redshift script over its table, each with comments
    # naming a table the fork does not have
    root = tmp_path / "sql"
    for engine in ("athena", "redshift"):
        (root / engine).mkdir(parents=True)
    (root / "athena" / "recent.sql").write_text(
        "-- Recent events (the old query read orders)\nSELECT * FROM events LIMIT 10;\n"
    )
    (root / "redshift" / "10_view.sql").write_text(
        "-- Replaces the view over curated.orders\nCREATE VIEW v AS SELECT * FROM curated.events;\n"
    )
    # THEN the check passes on the fork's table alone
    sql.check_tables({"events"}, root)
    # AND a statement that reads a table no dataset declares is named, with its file
    with (root / "redshift" / "10_view.sql").open("a") as script:
        script.write("CREATE VIEW w AS SELECT * FROM curated.orders;\n")
    with pytest.raises(ValueError, match=r"sql/redshift/10_view.sql reads table 'orders'"):
        sql.check_tables({"events"}, root)


def _tags(tags: Any) -> dict[str, Any]:
    """A resource's tags as a dict: most types list ``{Key, Value}`` pairs, Glue's map them."""
    return tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
