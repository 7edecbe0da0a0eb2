"""The README's architecture diagram is the one the code draws today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lake_app import WITHOUT_AUDIT, Synth, synthesize

from datalake.diagram import END, START, current_readme_diagram, main, mermaid, referenced, text, write_readme


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


def test_readme_diagram_matches_the_synthesized_app(sandbox: Synth) -> None:
    drawn = mermaid(sandbox.outdir)
    assert current_readme_diagram() == drawn, (
        "the architecture changed: run `make diagram` and commit README.md"
    )


def test_diagram_shows_flow_and_guards(sandbox: Synth) -> None:
    drawn = mermaid(sandbox.outdir)
    for expected in (
        "Firehose lake-sbx-orders",
        "Lambda transform",
        "S3 raw: lake-sbx-raw-<account>-<region>",
        "Glue job lake-sbx-orders-raw-to-curated (5.1)",
        "Glue database lake_sbx_curated: orders, orders_quarantine",
        "Athena workgroup lake-sbx-analysts",
        "KMS lake-sbx/curated",
        "Lake Formation: tags",
        "personas and roles: data-analyst",
        "Macie classification job",
        "CloudTrail",
    ):
        assert expected in drawn, expected
    # Edges come from the templates: the raw key encrypts the raw bucket, the job reads raw.
    assert "key_KMS_lake_sbx_raw -.->|encrypts| store_S3_raw_" in drawn
    assert "|new days| box_Glue_job_lake_sbx_orders_raw_to_curated_5_1" in drawn
    # The hourly schedule of the foundation invokes the trail check, which checks the trail.
    assert "round_schedule_rate_1_hour -->|invokes| box_Lambda_trail_check" in drawn
    assert "box_Lambda_trail_check -->|checks deliveries| box_CloudTrail_S3_data_events" in drawn


def test_switched_components_appear_in_the_diagram() -> None:
    every = synthesize("prod")
    drawn = mermaid(every.outdir)
    assert "Redshift Serverless lake-prd" in drawn and "|external schema|" in drawn
    # the warehouse's daily refresh of its copies
    assert (
        "round_schedule_cron_0_5 -->|refreshes| box_Redshift_Serverless_lake_prd_warehouse_Spectrum_masking"
        in drawn
    )
    # QuickSight on, Macie and CloudTrail off: the dashboard queries the analysts' workgroup
    drawn = mermaid(synthesize("sandbox", **WITHOUT_AUDIT).outdir)
    assert "box_Athena_workgroup_lake_sbx_analysts -->|direct query| box_QuickSight_dashboard_" in drawn
    assert "Macie" not in drawn and "CloudTrail" not in drawn


def test_a_template_value_is_read_as_text_and_its_references_found() -> None:
    # Intrinsics become names or placeholders, so labels read like the deployed names.
    assert text({"Ref": "AWS::AccountId"}) == "<account>"
    assert text({"Ref": "RawBucket"}) == "<RawBucket>"
    assert text({"Fn::Join": ["-", ["lake", {"Ref": "AWS::Region"}]]}) == "lake-<region>"
    assert (
        text({"Fn::GetAtt": ["Raw", "Arn"]}) == "<Raw.Arn>" and text({"Fn::GetAtt": "Raw.Arn"}) == "<Raw.Arn>"
    )
    assert text({"Fn::Sub": "s3://b-${AWS::Region}/${Prefix}"}) == "s3://b-<region>/<Prefix>"
    assert text({"Fn::Sub": ["arn:${AWS::Partition}:s3:::x", {}]}) == "arn:aws:s3:::x"
    assert text({"Fn::ImportValue": "x"}) == "<import>" and text(["a", {"Ref": "B"}]) == "a<B>"
    assert text({"Fn::If": ["c", 1, 2]}) == '{"Fn::If": ["c", 1, 2]}'  # anything else as JSON
    assert text({"Ref": "A", "Other": 1}) == '{"Other": 1, "Ref": "A"}'
    # Edges come from every logical id a value points at, at any depth.
    value = {"Fn::Join": ["", [{"Ref": "A"}, {"Fn::GetAtt": ["B", "Arn"]}, {"Fn::GetAtt": "C.Arn"}, ["x"]]]}
    assert referenced(value) == {"A", "B", "C"}
    assert referenced({"Ref": 3}) == set()


def test_make_diagram_writes_only_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    # GIVEN a README without the markers THEN it says which lines to add
    readme.write_text("# Lake\n")
    with pytest.raises(SystemExit, match=re.escape(f"{readme}: add the lines {START!r} and {END!r} where")):
        write_readme("flowchart LR", readme)
    # GIVEN the markers WHEN the diagram is written THEN only what is between them changes, once
    readme.write_text(f"# Lake\n{START}\nold\n{END}\nmore\n")
    assert write_readme("flowchart LR", readme) is True
    assert readme.read_text() == f"# Lake\n{START}\n```mermaid\nflowchart LR\n```\n{END}\nmore\n"
    assert current_readme_diagram(readme) == "flowchart LR"
    assert write_readme("flowchart LR", readme) is False


def test_make_diagram_prints_the_diagram_or_says_to_synth_first(
    tmp_path: Path, sandbox: Synth, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sandbox.outdir)]) == 0
    assert capsys.readouterr().out == mermaid(sandbox.outdir) + "\n"
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: no cloud assembly in {tmp_path}: run `make synth` first\n"
