"""The README's architecture diagram is the one the code draws today."""

from __future__ import annotations

import pytest
from lake_app import Synth, synthesize

from datalake.diagram import current_readme_diagram, mermaid


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


def test_switched_components_appear_in_the_diagram() -> None:
    every = synthesize("prod")
    drawn = mermaid(every.outdir)
    assert "Redshift Serverless lake-prd" in drawn and "|external schema|" in drawn
