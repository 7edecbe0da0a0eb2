"""Governance: Lake Formation order and grants, Macie, CloudTrail and its queries, key policies."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from typing import Any

import aws_cdk as cdk
import duckdb
import pytest
import sqlglot
from aws_cdk.assertions import Template
from cfn_resolve import ACCOUNT, REGION, Resolver
from lake_app import (
    SWITCHED,
    WITHOUT_AUDIT,
    Synth,
    actions,
    api_call_event,
    app_context,
    assumed_role,
    grant_principal,
    lf_grants,
    output_of,
    policy_statements,
    synthesize,
    tag_expression,
)

from cdk_constructs.bootstrap import ASSET_WRITES
from cdk_constructs.lake_formation import CatalogPermissions, LakeFormationSetup, Zone
from cdk_constructs.macie import ALLOW_LIST_REGEX, CUSTOM_IDENTIFIERS, RESULTS_PREFIX
from config import get_stage
from datalake import sql
from datalake.dataset import DATASETS_DIR, load_dataset
from datalake.sql import SQL_DIR
from stacks.catalog import pii_key_prefixes
from stacks.foundation import FoundationStack

ORDERS = load_dataset(DATASETS_DIR / "orders.json")
EXEC_ROLE = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-${AWS::AccountId}-${AWS::Region}"


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


@pytest.fixture(scope="module")
def governance(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.governance)


@pytest.fixture(scope="module")
def catalog(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.catalog)


def _of_type(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    return dict(template.find_resources(type_))


def _depends_on(resource: dict[str, Any]) -> set[str]:
    return set(resource.get("DependsOn", []))


def _names(resource: dict[str, Any]) -> tuple[str, str | None]:
    """The database and table (``None`` for a database) a tag association's resource names."""
    if "Database" in resource:
        return resource["Database"]["Name"], None
    named = resource.get("Table") or resource["TableWithColumns"]
    return named["DatabaseName"], named["Name"]


def _stack_dependencies(synth: Synth, stack: cdk.Stack) -> set[str]:
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    return set(manifest["artifacts"][stack.artifact_id].get("dependencies", []))


# --- Lake Formation: the order ---------------------------------------------------------------


def test_a_dataset_added_after_the_grants_by_tag_is_refused() -> None:
    # GIVEN the catalog's permissions whose grants by tag expression are made: they wait for
    # the associations known then
    stack = cdk.Stack(cdk.App(), "Catalog")
    database = cdk.aws_glue.CfnDatabase(
        stack,
        "Db",
        catalog_id="123456789012",
        database_input=cdk.aws_glue.CfnDatabase.DatabaseInputProperty(),
    )
    permissions = CatalogPermissions(
        stack, "LakeFormation", databases={"raw": (database, "raw")}, tag_keys=("z", "c")
    )
    permissions.grant_by_tags(engineers=["arn:aws:iam::123456789012:role/e"], readers=[], pii_readers=[])
    # WHEN a dataset's tables would be tagged after them THEN that is refused: a reader could
    # otherwise see a PII column before its tag
    with pytest.raises(ValueError, match="add every dataset before grant_by_tags"):
        permissions.add_dataset(stack, "Orders", tables=(), service_grants=())


def test_lake_formation_deploys_in_order_settings_registration_tags_associations_grants_jobs(
    sandbox: Synth, governance: Template, catalog: Template
) -> None:
    lake = sandbox.lake
    settings = _of_type(governance, "AWS::LakeFormation::DataLakeSettings")
    registrations = _of_type(governance, "AWS::LakeFormation::Resource")
    tags = _of_type(governance, "AWS::LakeFormation::Tag")
    assert len(settings) == 1 and len(registrations) == 3 and len(tags) == 2
    # settings -> registration
    for reg in registrations.values():
        assert set(settings) <= _depends_on(reg)
    # registration -> tags
    for tag in tags.values():
        assert set(registrations) <= _depends_on(tag)
    # tags -> associations: every association names its key through the tag's own output, and
    # the catalog stack deploys after the governance stack.
    assert lake.governance.artifact_id in _stack_dependencies(sandbox, lake.catalog)
    tag_outputs = {o for o in governance.to_json()["Outputs"] if any(t in o for t in tags)}
    associations = _of_type(catalog, "AWS::LakeFormation::TagAssociation")
    assert associations
    for assoc in associations.values():
        for pair in assoc["Properties"]["LFTags"]:
            assert output_of(pair["TagKey"]) in tag_outputs
    # associations -> grants: one by tag expression after every association (a reader never sees
    # a PII column before its tag), a dataset's nested stack's through that stack; one on a named
    # database, table or data-cells filter after the associations of that database and table,
    # and no other table's (a dataset's grants wait for no other dataset's tags); one on a data
    # location after no table's
    grants = _of_type(catalog, "AWS::LakeFormation::PrincipalPermissions")
    assert len(grants) >= 10
    after = sandbox.deploys_after(lake.catalog)
    on_tables = {lid for lid, a in associations.items() if _names(a["Properties"]["Resource"])[1] is not None}
    kinds = Counter()
    for lid, grant in grants.items():
        resource = grant["Properties"]["Resource"]
        kind = next(iter(resource))
        kinds[kind] += 1
        waits = set(associations) & after[lid]
        if kind == "LFTagPolicy":
            assert set(associations) == waits
            continue
        named = resource[kind]
        database = named.get("DatabaseName", named.get("Name") if kind == "Database" else None)
        table = named.get("TableName", named.get("Name") if kind == "Table" else None)
        expected = {
            lid
            for lid, assoc in associations.items()
            if _names(assoc["Properties"]["Resource"]) in {(database, None), (database, table)}
        }
        assert (kind == "DataLocation") is (database is None), kind
        assert bool(expected) is (database is not None), (kind, database, table)
        assert expected <= waits and waits & on_tables == expected & on_tables, (kind, database, table)
    assert set(kinds) == {"LFTagPolicy", "Database", "Table", "DataLocation", "DataCellsFilter"}
    # grants -> jobs and crawlers: the processing stack deploys after the catalog stack.
    assert lake.catalog.artifact_id in _stack_dependencies(sandbox, lake.processing)
    processing = sandbox.template(lake.processing)
    assert _of_type(processing, "AWS::Glue::Job") and _of_type(processing, "AWS::Glue::Crawler")
    # ... and the governance stack comes after the foundation whose buckets it registers.
    assert lake.foundation.artifact_id in _stack_dependencies(sandbox, lake.governance)


def test_settings_append_the_cdk_execution_role_and_never_replace_admins(governance: Template) -> None:
    (settings,) = _of_type(governance, "AWS::LakeFormation::DataLakeSettings").values()
    props = settings["Properties"]
    assert props["MutationType"] == "APPEND"
    assert props["Admins"] == [{"DataLakePrincipalIdentifier": {"Fn::Sub": EXEC_ROLE}}]
    # nothing else of the account's settings is touched
    assert set(props) == {"Admins", "MutationType"}


def test_stage_admins_are_added_after_the_execution_role() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    bucket = cdk.aws_s3.Bucket.from_bucket_name(stack, "B", "zone-bucket")
    key = cdk.aws_kms.Key(stack, "K")
    admin = "arn:aws:iam::123456789012:role/platform-admin"
    LakeFormationSetup(stack, "LF", prefix="t", admins=[admin], zones=[Zone("raw", bucket, key)])
    (settings,) = Template.from_stack(stack).find_resources("AWS::LakeFormation::DataLakeSettings").values()
    assert [a["DataLakePrincipalIdentifier"] for a in settings["Properties"]["Admins"]] == [
        {"Fn::Sub": EXEC_ROLE},
        admin,
    ]


def test_each_zone_is_registered_with_its_own_role_that_can_use_only_its_key(governance: Template) -> None:
    registrations = _of_type(governance, "AWS::LakeFormation::Resource")
    roles = _of_type(governance, "AWS::IAM::Role")
    policies = _of_type(governance, "AWS::IAM::ManagedPolicy")
    seen_roles = set()
    for reg in registrations.values():
        props = reg["Properties"]
        assert props["UseServiceLinkedRole"] is False
        assert props["HybridAccessEnabled"] is False
        role_id = props["RoleArn"]["Fn::GetAtt"][0]
        seen_roles.add(role_id)
        trust = roles[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lakeformation.amazonaws.com"}]
        (policy,) = [p for p in policies.values() if {"Ref": role_id} in p["Properties"]["Roles"]]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        kms = [s for s in statements if any(a.startswith("kms:") for a in _list(s["Action"]))]
        assert len(kms) == 1 and not isinstance(kms[0]["Resource"], list)
        zone = json.dumps(props["ResourceArn"]).split(":s3:::lake-sbx-")[1].split("-")[0]
        assert f"Keys{zone.capitalize()}Key" in output_of(kms[0]["Resource"])
    assert len(seen_roles) == 3


def test_tags_come_from_the_dataset_model(governance: Template) -> None:
    tags = {
        t["Properties"]["TagKey"]: t["Properties"]["TagValues"]
        for t in _of_type(governance, "AWS::LakeFormation::Tag").values()
    }
    assert tags == {
        "zone": ["raw", "curated", "analytics", "audit"],
        "classification": ["public", "internal", "pii"],
    }


def _associations(catalog: Template) -> list[tuple[dict[str, Any], str]]:
    """(resource, value) of every association, with its single tag value."""
    found = []
    for assoc in _of_type(catalog, "AWS::LakeFormation::TagAssociation").values():
        props = assoc["Properties"]
        for pair in props["LFTags"]:
            found.append((props["Resource"], pair["TagValues"][0]))
    return found


def test_pii_columns_databases_and_tables_are_tagged(catalog: Template) -> None:
    found = _associations(catalog)
    pii_columns = [r["TableWithColumns"] for r, v in found if "TableWithColumns" in r and v == "pii"]
    assert {(c["DatabaseName"], c["Name"], tuple(c["ColumnNames"])) for c in pii_columns} == {
        ("lake_sbx_raw", "orders", ORDERS.pii_columns),
        ("lake_sbx_curated", "orders", ORDERS.pii_columns),
    }
    zones = {
        r["Database"]["Name"]: v for r, v in found if "Database" in r and v in ("raw", "curated", "audit")
    }
    assert zones == {"lake_sbx_raw": "raw", "lake_sbx_curated": "curated", "lake_sbx_audit": "audit"}
    tables = {(r["Table"]["DatabaseName"], r["Table"]["Name"]): v for r, v in found if "Table" in r}
    assert tables[("lake_sbx_curated", "orders")] == "internal"
    # whole raw records (rejects, delivery errors, quarantine) are PII when any column is
    assert tables[("lake_sbx_curated", "orders_quarantine")] == "pii"
    assert tables[("lake_sbx_raw", "orders_rejected")] == "pii"
    assert tables[("lake_sbx_raw", "orders_delivery_errors")] == "pii"


def test_databases_leave_table_access_to_lake_formation(catalog: Template) -> None:
    for db in _of_type(catalog, "AWS::Glue::Database").values():
        assert db["Properties"]["DatabaseInput"]["CreateTableDefaultPermissions"] == []


def _persona_output(governance: Template, logical_prefix: str) -> str:
    outputs = [o for o in governance.to_json()["Outputs"] if logical_prefix in o and "Arn" in o]
    assert len(outputs) == 1, outputs
    return outputs[0]


def test_analysts_read_curated_tables_without_pii_columns(governance: Template, catalog: Template) -> None:
    analyst = _persona_output(governance, "PersonasDataAnalyst")
    grants = [g for g in lf_grants(catalog) if grant_principal(g) == analyst]
    tables = [g for g in grants if g["Resource"].get("LFTagPolicy", {}).get("ResourceType") == "TABLE"]
    assert len(tables) == 1
    assert tables[0]["Permissions"] == ["SELECT", "DESCRIBE"]
    assert tables[0]["PermissionsWithGrantOption"] == []
    expression = tag_expression(tables[0])
    assert expression == {"zone": ["curated", "analytics"], "classification": ["public", "internal"]}
    # and those zones' databases alone
    (databases,) = [
        g for g in grants if g["Resource"].get("LFTagPolicy", {}).get("ResourceType") == "DATABASE"
    ]
    assert databases["Permissions"] == ["DESCRIBE"]
    assert tag_expression(databases) == {"zone": ["curated", "analytics"]}
    # people assume the persona roles from the account, for sessions of an hour at most
    humans = [
        r["Properties"]
        for r in _of_type(governance, "AWS::IAM::Role").values()
        if "AWS" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert humans and {r["MaxSessionDuration"] for r in humans} == {3600}
    assert all("pii" not in values for values in expression.values())


def test_analysts_results_and_engineers_logs_stay_under_their_own_prefix(governance: Template) -> None:
    # analysts keep query results under their workgroup's prefix: another workgroup's results
    # (the audit workgroup's CloudTrail queries) are out of their reach
    analyst = policy_statements(governance, "PersonasAnalystPolicy")
    (results,) = [st for st in analyst if "s3:PutObject" in actions(st)]
    assert actions(results) == ["s3:GetObject", "s3:PutObject"]
    assert json.dumps(results["Resource"]).endswith('/lake-sbx-analysts/*"]]}')
    # engineers read the trail's log files in their bucket; the buckets' access logs are no one's
    engineer = policy_statements(governance, "PersonasEngineerPolicy")
    (logs,) = [
        st
        for st in engineer
        if "lake-sbx-audit-" in json.dumps(st["Resource"]) and "s3:GetObject" in actions(st)
    ]
    assert actions(logs) == ["s3:GetObject"]
    assert json.dumps(logs["Resource"]).endswith('/*"]]}')
    assert "access-logs" not in json.dumps(engineer)


def test_the_regional_analyst_queries_apart_from_the_analysts_whose_results_hold_every_row(
    governance: Template,
) -> None:
    # the analysts' queries return every country's rows: their history and results, which a
    # member of the workgroup may list and read, are out of the regional analyst's reach, and
    # the analysts' reach holds nothing of the regional analyst's
    def reach(policy: str) -> tuple[set[str], set[str]]:
        statements = policy_statements(governance, policy)
        (athena,) = [st for st in statements if "athena:ListQueryExecutions" in actions(st)]
        (results,) = [st for st in statements if "s3:PutObject" in actions(st)]
        workgroups = set(re.findall(r":workgroup/([^\"]+)", json.dumps(athena["Resource"])))
        prefixes = set(re.findall(r"-athena-results-.*?/([^/\"]+)/\*", json.dumps(results["Resource"])))
        return workgroups, prefixes

    assert reach("PersonasAnalystPolicy") == ({"lake-sbx-analysts"}, {"lake-sbx-analysts"})
    assert reach("PersonasRegionalAnalystPolicy") == (
        {"lake-sbx-regional-analysts"},
        {"lake-sbx-regional-analysts"},
    )


def test_engineers_have_every_zone(governance: Template, catalog: Template) -> None:
    engineer = _persona_output(governance, "PersonasDataEngineer")
    grants = [g for g in lf_grants(catalog) if grant_principal(g) == engineer]
    by_type = {g["Resource"]["LFTagPolicy"]["ResourceType"]: g for g in grants}
    table = by_type["TABLE"]
    assert tag_expression(table) == {"zone": ["raw", "curated", "analytics", "audit"]}
    assert set(table["Permissions"]) == {"SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER", "DROP"}


def test_engineers_may_run_the_operator_tools_but_not_purge_versions(governance: Template) -> None:
    # make replay (a stream of the stage, or the data stream it reads, under the raw key), make
    # backfill and make erase (the zones' objects); deleting object versions is an admin's
    statements = policy_statements(governance, "PersonasEngineerPolicy")
    granted = {a for st in statements for a in actions(st)}
    assert {"firehose:PutRecordBatch", "firehose:DescribeDeliveryStream", "kinesis:PutRecords"} <= granted
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= granted
    assert not {"s3:DeleteObjectVersion", "s3:ListBucketVersions"} & granted

    def resource_of(action: str) -> str:
        (statement,) = [st for st in statements if action in actions(st)]
        return json.dumps(statement["Resource"])

    assert ":deliverystream/lake-sbx-*" in resource_of("firehose:PutRecordBatch")
    assert ":stream/lake-sbx-*" in resource_of("kinesis:PutRecords")
    (via_kinesis,) = [
        st
        for st in statements
        if st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", {}) is not None
        and "kinesis" in json.dumps(st.get("Condition"))
    ]
    assert actions(via_kinesis) == ["kms:GenerateDataKey"]
    assert "KeysRawKey" in json.dumps(via_kinesis["Resource"])


def test_service_roles_get_exactly_their_tables(governance: Template, catalog: Template) -> None:
    # a dataset's roles by the names the governance stack gives them (the catalog addresses them
    # by name, not by an output of the governance stack's)
    roles = governance.find_resources("AWS::IAM::Role")
    job, crawler = (
        f"role/{roles[lid]['Properties']['RoleName']}"
        for prefix in ("PersonasOrdersJobRole", "PersonasOrdersCrawlerRole")
        for lid in roles
        if lid.startswith(prefix)
    )
    grants = lf_grants(catalog)

    def of(principal: str) -> dict[str, list[str]]:
        out = {}
        for g in grants:
            if grant_principal(g) != principal:
                continue
            r = g["Resource"]
            if "Table" in r:
                out[f"table:{r['Table']['Name']}"] = g["Permissions"]
            elif "Database" in r:
                out[f"db:{r['Database']['Name']}"] = g["Permissions"]
            elif "DataLocation" in r:
                out["location"] = g["Permissions"]
            else:
                raise AssertionError(f"service roles get named grants only: {r}")
        return out

    assert of(job) == {
        "db:lake_sbx_curated": ["DESCRIBE"],
        "table:orders": ["SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE"],
        "table:orders_quarantine": ["SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE"],
    }
    assert of(crawler) == {
        "db:lake_sbx_curated": ["DESCRIBE", "ALTER"],  # no CREATE_TABLE: drift is logged, never a new table
        "table:orders": ["SELECT", "ALTER", "DESCRIBE"],
        "table:orders_quarantine": ["SELECT", "ALTER", "DESCRIBE"],
        "location": ["DATA_LOCATION_ACCESS"],
    }


def test_crawler_uses_lake_formation_credentials(sandbox: Synth) -> None:
    (crawler,) = _of_type(sandbox.template(sandbox.lake.processing), "AWS::Glue::Crawler").values()
    assert crawler["Properties"]["LakeFormationConfiguration"] == {"UseLakeFormationCredentials": True}


def test_data_cells_filter_limits_rows_by_country_and_hides_pii(
    governance: Template, catalog: Template
) -> None:
    (cells,) = _of_type(catalog, "AWS::LakeFormation::DataCellsFilter").values()
    props = cells["Properties"]
    assert props["TableName"] == "orders" and props["DatabaseName"] == "lake_sbx_curated"
    assert props["RowFilter"] == {"FilterExpression": "country IN ('KR')"}
    assert props["ColumnWildcard"] == {"ExcludedColumnNames": list(ORDERS.pii_columns)}
    regional = _persona_output(governance, "PersonasRegionalAnalyst")
    selects = [
        g for g in lf_grants(catalog) if grant_principal(g) == regional and "DataCellsFilter" in g["Resource"]
    ]
    assert [g["Resource"]["DataCellsFilter"]["Name"] for g in selects] == [props["Name"]]


def test_lake_formation_off_leaves_an_iam_only_lake() -> None:
    synth = synthesize("sandbox", **SWITCHED)
    lake = synth.lake
    for stack in lake.stacks:
        assert not [
            r
            for r in synth.template_json(stack)["Resources"].values()
            if r["Type"].startswith("AWS::LakeFormation::")
        ]
    for db in _of_type(synth.template(lake.catalog), "AWS::Glue::Database").values():
        assert "CreateTableDefaultPermissions" not in db["Properties"]["DatabaseInput"]
    (crawler,) = _of_type(synth.template(lake.processing), "AWS::Glue::Crawler").values()
    assert "LakeFormationConfiguration" not in crawler["Properties"]
    # analysts then read the curated bucket through IAM
    policies = json.dumps(synth.template_json(lake.governance))
    assert "lakeformation:GetDataAccess" not in policies
    # and the job and the crawler have no use for Lake Formation's credentials
    assert "lakeformation:GetDataAccess" not in json.dumps(synth.template_json(lake.processing))
    # nor is a change to Lake Formation's permissions drift to alert on
    rules = synth.template_json(lake.foundation)["Resources"].values()
    assert [r for r in rules if r["Type"] == "AWS::Events::Rule"]  # the key and trail alerts stay
    assert "aws.lakeformation" not in json.dumps([r for r in rules if r["Type"] == "AWS::Events::Rule"])


# --- Macie ---------------------------------------------------------------------------------


def test_macie_session_identifiers_allow_list_filter_and_job(sandbox: Synth, governance: Template) -> None:
    foundation = sandbox.template(sandbox.lake.foundation)
    assert len(_of_type(foundation, "AWS::Macie::Session")) == 1
    identifiers = {
        i["Properties"]["Name"]: i["Properties"]
        for i in _of_type(governance, "AWS::Macie::CustomDataIdentifier").values()
    }
    assert set(identifiers) == {"lake-sbx-KoreanMobileNumber", "lake-sbx-KoreanResidentRegistrationNumber"}
    (allow,) = _of_type(governance, "AWS::Macie::AllowList").values()
    assert allow["Properties"]["Criteria"] == {"Regex": ALLOW_LIST_REGEX}
    (flt,) = _of_type(governance, "AWS::Macie::FindingsFilter").values()
    assert flt["Properties"]["Action"] == "ARCHIVE"
    (job,) = _of_type(governance, "Custom::MacieClassificationJob").values()
    props = job["Properties"]
    assert props["Frequency"] == "WEEKLY"
    assert props["SamplingPercentage"] == "100"  # every object of the zones, not a sample
    assert [b["Fn::Join"][1][0] for b in props["Buckets"]] == ["lake-sbx-raw-", "lake-sbx-curated-"]
    assert len(props["CustomDataIdentifierIds"]) == 2 and len(props["AllowListIds"]) == 1


@pytest.mark.parametrize(
    ("identifier", "matches", "misses"),
    [
        (
            "KoreanMobileNumber",
            ["010-1234-5678", "01012345678", "011 234 5678", "019-9999-0000"],
            ["02-123-4567", "012-1234-5678"],
        ),
        (
            "KoreanResidentRegistrationNumber",
            ["900101-1234567", "0512312345678", "991231-2000001"],
            ["901301-1234567", "900132-1234567", "900101-9234567"],
        ),
    ],
)
def test_custom_identifiers_find_korean_numbers(
    identifier: str, matches: list[str], misses: list[str]
) -> None:
    pattern = re.compile(rf"(?<![0-9]){CUSTOM_IDENTIFIERS[identifier]['regex']}(?![0-9])")
    for text in matches:
        assert pattern.search(f"연락처: {text}"), text
    for text in misses:
        assert not pattern.search(f"연락처: {text}"), text


def test_allow_list_covers_the_sample_data_addresses() -> None:
    from datalake.sample import payloads

    emails = [json.loads(p)["customer_email"] for p in payloads(20, seed=1, defects=False)]
    assert all(re.fullmatch(ALLOW_LIST_REGEX, e) for e in emails)
    assert not re.fullmatch(ALLOW_LIST_REGEX, "kim@company.co.kr")


def test_macie_findings_reach_the_alert_topic_with_severity(governance: Template) -> None:
    rules = [r["Properties"] for r in _of_type(governance, "AWS::Events::Rule").values()]
    (rule,) = [r for r in rules if r["EventPattern"].get("detail-type") == ["Macie Finding"]]
    assert rule["EventPattern"]["source"] == ["aws.macie"]
    (target,) = rule["Targets"]
    transformer = target["InputTransformer"]
    paths = transformer["InputPathsMap"]
    assert paths["severity"] == "$.detail.severity.description"
    # and where it was found, as the event carries it (Macie's Finding object, under detail)
    assert paths["bucket"] == "$.detail.resourcesAffected.s3Bucket.name"
    assert paths["key"] == "$.detail.resourcesAffected.s3Object.key"
    assert "severity <severity>" in transformer["InputTemplate"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 20


def test_macie_stopped_or_blinded_outside_a_deployment_alerts(sandbox: Synth, governance: Template) -> None:
    rules = [r["Properties"] for r in _of_type(governance, "AWS::Events::Rule").values()]
    (rule,) = [r for r in rules if r["EventPattern"].get("detail-type") == ["AWS API Call via CloudTrail"]]
    # Macie's API calls reach EventBridge as aws.macie2 (its event reference, "Amazon Macie
    # events"); its findings as aws.macie
    assert rule["EventPattern"]["source"] == ["aws.macie2"]
    pattern = sandbox.event_pattern(sandbox.lake.governance, rule["EventPattern"])
    (function_role,) = [
        lid
        for lid in _of_type(governance, "AWS::IAM::Role")
        if lid.startswith("MacieClassificationJobFunctionRole")
    ]

    def call(name: str, issuer: str | None, **detail: Any) -> dict[str, Any]:
        user = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/kim"}
        identity = user if issuer is None else assumed_role(issuer)
        return api_call_event("macie2", name, {}, userIdentity=identity, **detail)

    (results_role,) = [
        lid
        for lid in _of_type(governance, "AWS::IAM::Role")
        if lid.startswith("MacieResultsRepositoryFunctionRole")
    ]
    # the session paused, a job cancelled, an archiving filter made, or the discovery results
    # sent elsewhere by a person: published
    for name in (
        "UpdateMacieSession",
        "UpdateClassificationJob",
        "CreateFindingsFilter",
        "DisableMacie",
        "PutClassificationExportConfiguration",
    ):
        assert pattern.matches_event(call(name, "admin")), name
        assert pattern.matches_event(call(name, None)), name  # an IAM user: no session issuer
    # by a deployment, by the job's own function (it cancels a replaced job) or the results
    # repository's, refused, or a read: not
    assert not pattern.matches_event(
        call("UpdateFindingsFilter", f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}")
    )
    assert not pattern.matches_event(call("UpdateClassificationJob", function_role))
    assert not pattern.matches_event(call("PutClassificationExportConfiguration", results_role))
    assert not pattern.matches_event(call("UpdateMacieSession", "admin", errorCode="AccessDenied"))
    assert not pattern.matches_event(call("GetMacieSession", "admin"))
    template = rule["Targets"][0]["InputTransformer"]["InputTemplate"]
    assert template == '"Macie: <call> by <caller> at <time>, outside a deployment"'


def test_macie_can_decrypt_the_scanned_zones_only_through_s3(sandbox: Synth) -> None:
    foundation = sandbox.template_json(sandbox.lake.foundation)
    for key_id in ("Raw", "Curated"):
        (key,) = [
            r
            for k, r in foundation["Resources"].items()
            if r["Type"] == "AWS::KMS::Key" and k.startswith(f"Keys{key_id}Key")
        ]
        (macie,) = [
            s
            for s in key["Properties"]["KeyPolicy"]["Statement"]
            if s.get("Sid") == "AllowMacieToDecryptObjectsThroughS3"
        ]
        assert macie["Action"] == "kms:Decrypt"
        assert "AWSServiceRoleForAmazonMacie" in json.dumps(macie["Principal"])
        assert "kms:ViaService" in macie["Condition"]["StringEquals"]
        # the key is created after the session that creates Macie's service-linked role
        assert "MacieSession" in key["DependsOn"]


def test_macie_keeps_its_discovery_results_in_a_bucket_of_their_own_under_the_logs_key(
    sandbox: Synth, governance: Template
) -> None:
    # GIVEN the repository setting, as a deployment fills it in
    (repository_id,) = _of_type(governance, "Custom::MacieResultsRepository")
    repository = _of_type(governance, "Custom::MacieResultsRepository")[repository_id]
    props = sandbox.resolved(
        sandbox.lake.governance,
        {k: repository["Properties"][k] for k in ("Bucket", "KeyPrefix", "KmsKeyArn")},
    )
    foundation = sandbox.template_json(sandbox.lake.foundation)
    (logs_key,) = [
        k
        for k, r in foundation["Resources"].items()
        if k.startswith("KeysLogsKey") and r["Type"] == "AWS::KMS::Key"
    ]
    logs_key_arn = sandbox.resolved(sandbox.lake.foundation, {"Fn::GetAtt": [logs_key, "Arn"]})
    audit = f"lake-sbx-macie-results-{ACCOUNT}-{REGION}"
    assert (props["Bucket"], props["KeyPrefix"], props["KmsKeyArn"]) == (audit, RESULTS_PREFIX, logs_key_arn)
    # THEN the job is created after it (its first run keeps its results there), and the function
    # that sets it may do that alone
    (job,) = _of_type(governance, "Custom::MacieClassificationJob").values()
    assert repository_id in job["DependsOn"]
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for lid, p in _of_type(governance, "AWS::IAM::ManagedPolicy").items()
        if lid.startswith("MacieResultsRepositoryFunction")
    ]
    assert [st["Action"] for st in policy if "macie2" in json.dumps(st["Action"])] == [
        "macie2:PutClassificationExportConfiguration"
    ]
    # AND Macie may write there and encrypt with the key for this account's export configuration
    # and jobs only, as Macie's guide conditions both policies
    sources = {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {
            "aws:SourceArn": [
                f"arn:aws:macie2:{REGION}:{ACCOUNT}:export-configuration:*",
                f"arn:aws:macie2:{REGION}:{ACCOUNT}:classification-job/*",
            ]
        },
    }
    statements = [
        st
        for r in foundation["Resources"].values()
        if r["Type"] in ("AWS::S3::BucketPolicy", "AWS::KMS::Key")
        for st in (r["Properties"].get("PolicyDocument") or r["Properties"]["KeyPolicy"])["Statement"]
        if st.get("Principal") == {"Service": "macie.amazonaws.com"}
    ]
    by_sid = {st["Sid"]: sandbox.resolved(sandbox.lake.foundation, st) for st in statements}
    assert set(by_sid) == {
        "MacieWritesDiscoveryResults",
        "MacieLocatesTheResultsBucket",
        "AllowMacieToEncryptDiscoveryResults",
    }
    assert all(st["Condition"] == sources for st in by_sid.values())
    write = by_sid["MacieWritesDiscoveryResults"]
    assert (write["Action"], write["Resource"]) == (
        "s3:PutObject",
        f"arn:aws:s3:::{audit}/{RESULTS_PREFIX}/*",
    )
    assert by_sid["MacieLocatesTheResultsBucket"]["Resource"] == f"arn:aws:s3:::{audit}"
    assert by_sid["AllowMacieToEncryptDiscoveryResults"]["Action"] == ["kms:Encrypt", "kms:GenerateDataKey"]


def test_macies_results_setting_is_left_to_the_owner_of_a_reused_session() -> None:
    # the setting is the account's: a reused session's owner sets it, and no bucket waits for it
    reused = synthesize("sandbox", **SWITCHED)
    assert not _of_type(reused.template(reused.lake.governance), "Custom::MacieResultsRepository")
    foundation = reused.template_json(reused.lake.foundation)
    assert '{"Service": "macie.amazonaws.com"}' not in json.dumps(foundation)
    assert not [lid for lid in foundation["Resources"] if lid.startswith("StorageMacieResults")]
    # the results' bucket does not need the trail's
    stage = get_stage("sandbox").with_features(cloudtrail=False)
    no_trail = FoundationStack(cdk.App(context=app_context()), "NoTrail", stage=stage)
    assert no_trail.storage.audit is None and no_trail.macie_results is not None


def test_reusing_the_accounts_macie_session() -> None:
    synth = synthesize("sandbox", **SWITCHED)
    assert not _of_type(synth.template(synth.lake.foundation), "AWS::Macie::Session")
    assert _of_type(synth.template(synth.lake.governance), "Custom::MacieClassificationJob")


def test_macie_and_cloudtrail_switch_off_and_quicksight_is_granted_like_analysts() -> None:
    synth = synthesize("sandbox", **WITHOUT_AUDIT)
    types = {r["Type"] for t in synth.all_templates().values() for r in t["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Macie::") or t.startswith("Custom::Macie")}
    assert (
        "AWS::CloudTrail::Trail" not in types and "AWS::Athena::NamedQuery" in types
    )  # analysts' queries stay
    catalog = synth.template(synth.lake.catalog)
    assert "AuditDatabase" not in json.dumps(catalog.to_json()["Resources"])
    principal = WITHOUT_AUDIT["quicksight_principal_arn"]
    role = next(
        k
        for k, r in _of_type(synth.template(synth.lake.governance), "AWS::IAM::Role").items()
        if k.startswith("PersonasQuickSightRole")
    )
    for identity in (principal, role):
        grants = [g for g in lf_grants(catalog) if identity in json.dumps(g["Principal"])]
        (tables,) = [g for g in grants if g["Resource"]["LFTagPolicy"]["ResourceType"] == "TABLE"]
        assert tables["Permissions"] == ["SELECT", "DESCRIBE"]
        assert tag_expression(tables)["classification"] == ["public", "internal"]


# --- CloudTrail ----------------------------------------------------------------------------


def test_trail_is_encrypted_validated_and_logs_lake_data_events(sandbox: Synth) -> None:
    (trail,) = _of_type(sandbox.template(sandbox.lake.foundation), "AWS::CloudTrail::Trail").values()
    props = trail["Properties"]
    assert props["EnableLogFileValidation"] is True
    assert props["IsMultiRegionTrail"] is True
    assert props["IncludeGlobalServiceEvents"] is True  # IAM and STS calls are global
    assert props["KMSKeyId"]["Fn::GetAtt"][0].startswith("KeysLogsKey")
    assert props["S3BucketName"]["Ref"].startswith("StorageAuditBucket")
    assert props["S3KeyPrefix"] == "cloudtrail"
    assert props["CloudWatchLogsLogGroupArn"]
    management, data, written = props["EventSelectors"]
    assert management == {"IncludeManagementEvents": True, "ReadWriteType": "All"}
    (resources,) = data["DataResources"]
    assert resources["Type"] == "AWS::S3::Object"
    # the data selector adds object reads and writes, not the management events a second time
    assert (data["IncludeManagementEvents"], data["ReadWriteType"]) == (False, "All")
    assert sorted(v["Fn::Join"][1][0]["Fn::GetAtt"][0][:14] for v in resources["Values"]) == sorted(
        ["StorageAnalyti", "StorageCurated", "StorageRawBuck"]
    )
    # and the writes alone of the CDK assets bucket, from which Glue reads the jobs' scripts
    assert (written["IncludeManagementEvents"], written["ReadWriteType"]) == (False, "WriteOnly")
    (assets,) = written["DataResources"][0]["Values"]
    assert {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"} in assets["Fn::Join"][1]


def test_cloudtrail_table_uses_partition_projection(catalog: Template) -> None:
    tables = [t["Properties"]["TableInput"] for t in _of_type(catalog, "AWS::Glue::Table").values()]
    (trail,) = [t for t in tables if t["Name"] == "cloudtrail"]
    params = trail["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.timestamp.type"] == "date"
    assert params["projection.timestamp.format"] == "yyyy/MM/dd"
    assert params["projection.timestamp.range"].endswith(",NOW")
    assert json.dumps(params["storage.location.template"]).count("${timestamp}") == 1
    assert trail["StorageDescriptor"]["InputFormat"] == "com.amazon.emr.cloudtrail.CloudTrailInputFormat"
    assert [k["Name"] for k in trail["PartitionKeys"]] == ["timestamp"]


def test_audit_named_queries_run_in_the_audit_workgroup(catalog: Template) -> None:
    queries = {
        q["Properties"]["Name"]: q["Properties"]
        for q in _of_type(catalog, "AWS::Athena::NamedQuery").values()
    }
    assert set(queries) == {
        "audit: who read pii",
        "audit: lake formation changes",
        "audit: deployment asset writes",
    }
    (wg_id,) = _of_type(catalog, "AWS::Athena::WorkGroup")
    for q in queries.values():
        assert q["WorkGroup"] == {"Ref": wg_id}
        assert q["Database"] == "lake_sbx_audit"
        assert "{{" not in q["QueryString"]
    assert (
        sql.regex_for_prefixes(pii_key_prefixes((ORDERS,))) in queries["audit: who read pii"]["QueryString"]
    )
    # the writes are those of the bucket the trail logs them for, the calls those the rule watches
    assets = {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"}
    assert assets in queries["audit: deployment asset writes"]["QueryString"]["Fn::Join"][1]
    listed = re.search(
        r"eventname IN \((.*?)\)", (SQL_DIR / "audit" / "deployment_asset_writes.sql").read_text(), re.S
    )
    assert listed is not None
    assert re.findall(r"'(\w+)'", listed.group(1)) == list(ASSET_WRITES)


ASSETS_BUCKET = "cdk-hnb659fds-assets-123456789012-eu-west-1"
PUBLISHER = "cdk-hnb659fds-file-publishing-role-123456789012-eu-west-1"


def _cloudtrail_rows(today: date) -> list[tuple[Any, ...]]:
    day = lambda n: (today - timedelta(days=n)).strftime("%Y/%m/%d")  # noqa: E731
    iso = lambda n, h=10: (today - timedelta(days=n)).isoformat() + f"T{h:02}:00:00Z"  # noqa: E731

    def s3(
        who: str,
        key: str,
        n: int,
        *,
        error: str | None = None,
        event: str = "GetObject",
        h: int = 10,
        bucket: str = "lake-sbx-curated-123456789012-eu-west-1",
    ) -> tuple[Any, ...]:
        params = json.dumps({"bucketName": bucket, "key": key})
        return (
            who,
            "AssumedRole",
            iso(n, h),
            "s3.amazonaws.com",
            event,
            error,
            params,
            "10.0.0.1",
            day(n),
            None,
        )

    def lf(who: str, event: str, n: int, params: str = "{}", extra: str | None = None) -> tuple[Any, ...]:
        return (
            who,
            "AssumedRole",
            iso(n),
            "lakeformation.amazonaws.com",
            event,
            None,
            params,
            "athena.amazonaws.com",
            day(n),
            extra,
        )

    def vend(who: str, session: str, table: str, n: int) -> tuple[Any, ...]:
        # Lake Formation's GetDataAccess as Athena calls it for a query (the shape of the samples
        # in aws/aws-lakeformation-best-practices, auditing/lake-formation-cloudtrail.md)
        params = json.dumps({"tableArn": f"arn:aws:glue:eu-west-1:1:table/lake_sbx_curated/{table}"})
        extra = json.dumps({"requesterService": "ATHENA", "lakeFormationRoleSessionName": session})
        return lf(who, "GetDataAccess", n, params, extra)

    registration = "arn:aws:sts::1:assumed-role/lake-sbx-curated-location"
    return [
        # an analyst's Athena query: Lake Formation vends a session of the curated zone's
        # registration role, which reads the object
        vend("arn:aws:sts::1:assumed-role/analyst/kim", "AWSLF-00-AT-1-EXAMPLE01", "orders", 1),
        s3(
            f"{registration}/AWSLF-00-AT-1-EXAMPLE01",
            "orders/year=2026/month=11/day=20/part-0.parquet",
            1,
            h=11,
        ),
        s3(
            "arn:aws:sts::1:assumed-role/engineer/lee",
            "orders_quarantine/year=2026/month=11/day=20/q.parquet",
            3,
        ),
        # a session vended before the window's first day: still shown, under the session
        s3(f"{registration}/AWSLF-00-AT-1-EXAMPLE02", "orders/year=2026/month=11/day=01/part-0.parquet", 5),
        s3(
            "arn:aws:sts::1:assumed-role/analyst/park", "orders/year=2026/month=10/day=01/part-0.parquet", 40
        ),  # too old
        s3("arn:aws:sts::1:assumed-role/analyst/choi", "orders/x.parquet", 1, error="AccessDenied"),  # failed
        s3("arn:aws:sts::1:assumed-role/analyst/kim", "reports/daily.parquet", 1),  # not a PII prefix
        s3("arn:aws:sts::1:assumed-role/writer/job", "orders/new.parquet", 1, event="PutObject"),  # a write
        lf("arn:aws:sts::1:assumed-role/admin/jung", "GrantPermissions", 2),
        # a grant naming a tag expression changes with it; dropping an opt-in ends enforcement
        lf("arn:aws:sts::1:assumed-role/admin/yoon", "UpdateLFTagExpression", 4),
        lf("arn:aws:sts::1:assumed-role/admin/yoon", "DeleteLakeFormationOptIn", 6),
        lf("arn:aws:sts::1:assumed-role/admin/jung", "GetDataAccess", 2),  # a read, not a change
        lf("arn:aws:sts::1:assumed-role/admin/han", "DeleteLFTag", 50),  # too old
        # the CDK assets bucket: a deployment publishes a script, a person overwrites it later;
        # a job run reads it, and an older write is out of the window
        s3(
            f"arn:aws:sts::1:assumed-role/{PUBLISHER}/cdk",
            "f9226.py",
            3,
            event="PutObject",
            bucket=ASSETS_BUCKET,
        ),
        s3("arn:aws:sts::1:assumed-role/admin/ko", "f9226.py", 2, event="PutObject", bucket=ASSETS_BUCKET),
        s3("arn:aws:sts::1:assumed-role/orders-job/glue", "f9226.py", 1, bucket=ASSETS_BUCKET),
        s3("arn:aws:sts::1:assumed-role/admin/ko", "old.py", 45, event="PutObject", bucket=ASSETS_BUCKET),
    ]


@pytest.mark.parametrize("query", sql.load("audit"), ids=lambda q: q.name)
def test_audit_queries_parse_as_trino_and_answer_on_sample_events(query: sql.SqlFile) -> None:
    text = query.render(
        {"pii_key_regex": sql.regex_for_prefixes(pii_key_prefixes((ORDERS,))), "assets_bucket": ASSETS_BUCKET}
    )
    sqlglot.parse_one(text, read="trino")  # raises on a syntax error
    assert text.count("?") == 1  # one execution parameter: the days
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE cloudtrail (useridentity STRUCT(arn VARCHAR, type VARCHAR), eventtime VARCHAR, "
        "eventsource VARCHAR, eventname VARCHAR, errorcode VARCHAR, requestparameters VARCHAR, "
        'sourceipaddress VARCHAR, "timestamp" VARCHAR, additionaleventdata VARCHAR)'
    )
    rows = [({"arn": who, "type": kind}, *rest) for who, kind, *rest in _cloudtrail_rows(date.today())]
    con.executemany("INSERT INTO cloudtrail VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    result = con.execute(sql.athena_to_duckdb(text), [30]).fetchall()
    if query.name == "who_read_pii":
        # principal (last part of the ARN), through Lake Formation, table, via, object's first folder
        assert [
            (r[0].split("/")[-1], r[1], r[2] and r[2].split("/")[-1], r[3], r[5].split("/")[0])
            for r in result
        ] == [
            ("kim", True, "orders", "athena.amazonaws.com", "orders"),
            ("lee", False, None, "10.0.0.1", "orders_quarantine"),
            ("AWSLF-00-AT-1-EXAMPLE02", True, None, "10.0.0.1", "orders"),
        ]
    elif query.name == "deployment_asset_writes":
        # role (of the assumed-role ARN), call, key: a deployment's publishing and a person's
        # overwrite alike, newest first; reads, other buckets and older writes are not listed
        assert [(r[1].split("/")[1], r[2], r[3]) for r in result] == [
            ("admin", "PutObject", "f9226.py"),
            (PUBLISHER, "PutObject", "f9226.py"),
        ]
    else:
        assert [(r[1].split("/")[-1], r[2]) for r in result] == [
            ("jung", "GrantPermissions"),
            ("yoon", "UpdateLFTagExpression"),
            ("yoon", "DeleteLakeFormationOptIn"),
        ]


# --- Key policies --------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", ["sandbox", "prod"])
def test_no_principal_but_the_account_root_gets_kms_star(stage: str) -> None:
    synth = synthesize(stage)
    keys = 0
    for name, template in synth.all_templates().items():
        for logical, resource in template["Resources"].items():
            if resource["Type"] != "AWS::KMS::Key":
                continue
            keys += 1
            for statement in resource["Properties"]["KeyPolicy"]["Statement"]:
                actions = _list(statement["Action"])
                principal = statement["Principal"]
                if "kms:*" in actions:
                    root = {
                        "AWS": {
                            "Fn::Join": [
                                "",
                                [
                                    "arn:",
                                    {"Ref": "AWS::Partition"},
                                    ":iam::",
                                    {"Ref": "AWS::AccountId"},
                                    ":root",
                                ],
                            ]
                        }
                    }
                    assert principal == root, f"{name}/{logical}: kms:* for {principal}"
                else:
                    assert not any(a.endswith(":*") or a == "*" for a in actions), (
                        f"{name}/{logical}: {actions}"
                    )
                    # every service principal's use is scoped by a condition
                    if "Service" in principal or "AWSServiceRoleForAmazonMacie" in json.dumps(principal):
                        assert statement.get("Condition"), (
                            f"{name}/{logical}: {statement.get('Sid')} has no condition"
                        )
    assert keys == 4


@pytest.mark.parametrize(("stage", "features"), [("sandbox", {}), ("prod", {}), ("sandbox", WITHOUT_AUDIT)])
def test_every_role_that_may_ask_lake_formation_for_data_holds_a_grant(
    stage: str, features: dict[str, Any]
) -> None:
    # a role allowed lakeformation:GetDataAccess reads through Lake Formation (Athena, Glue,
    # QuickSight, Redshift); without a grant it reads nothing, as the daily report's role did
    # until it had one. Lake Formation is on in these stages.
    synth = synthesize(stage, **features)
    templates = synth.all_templates()
    resolver = Resolver(templates)
    asking: set[str] = set()
    granted: set[str] = set()
    for stack, template in templates.items():
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                if "lakeformation:GetDataAccess" in json.dumps(props["PolicyDocument"]):
                    asking |= {str(resolver.resolve(stack, role)) for role in props.get("Roles", [])}
            elif resource["Type"] == "AWS::LakeFormation::PrincipalPermissions":
                arn = str(resolver.resolve(stack, props["Principal"]["DataLakePrincipalIdentifier"]))
                granted.add(arn.rsplit("/", 1)[-1])  # a role's ARN ends with its name
    assert len(asking) >= 6  # the personas, the pipeline's job and crawler, the report...
    assert asking <= granted, sorted(asking - granted)
