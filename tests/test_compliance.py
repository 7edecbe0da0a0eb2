"""Five compliance packs run on every synth; synth fails on any finding not acknowledged."""

from __future__ import annotations

from collections import Counter

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from lake_app import Synth, synthesize

from stacks.compliance import PACK_PREFIXES, add_compliance_packs

#: Acknowledgements per pack and stage configuration. Change these numbers on purpose only: every
#: acknowledgement is a finding a reviewer accepted, with its reason next to the code.
EXPECTED_ACKNOWLEDGEMENTS = {
    "sandbox": {
        "AwsSolutions-": 48,
        "NIST.800.53.R5-": 13,
        "HIPAA.Security-": 13,
        "PCI.DSS.321-": 13,
        "Serverless-": 6,
    },
    # prod adds Redshift: the Spectrum role, two custom-resource functions, the VPC endpoints' group
    "prod": {
        "AwsSolutions-": 54,
        "NIST.800.53.R5-": 22,
        "HIPAA.Security-": 22,
        "PCI.DSS.321-": 22,
        "Serverless-": 12,
    },
}


def acknowledgements(synth: Synth) -> dict[str, list[tuple[str, str, str]]]:
    """(construct path, finding id, reason) of every acknowledgement, by pack prefix."""
    found: dict[str, list[tuple[str, str, str]]] = {p: [] for p in PACK_PREFIXES}
    for construct in synth.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != "aws:cdk:acknowledged-rules":
                continue
            for key, reason in entry.data.items():
                finding = key.split("::", 1)[-1]
                prefix = next((p for p in PACK_PREFIXES if finding.startswith(p)), None)
                if prefix is None:
                    continue  # CDK's own (e.g. CloudFormation-Validate on its flow-log construct)
                found[prefix].append((construct.node.path, finding, reason))
    return found


@pytest.mark.parametrize("stage", ["sandbox", "prod"])
def test_acknowledgements_are_counted_per_pack(stage: str) -> None:
    # synthesize() raises if any pack reports an unacknowledged finding.
    found = acknowledgements(synthesize(stage))
    assert {p: len(v) for p, v in found.items()} == EXPECTED_ACKNOWLEDGEMENTS[stage]
    for entries in found.values():
        for path, finding, reason in entries:
            assert len(reason) >= 40, f"{path}: {finding} needs a reason a reviewer accepts"


def test_acknowledgements_are_one_per_finding_and_construct() -> None:
    found = acknowledgements(synthesize("sandbox"))
    keys = Counter((path, finding) for entries in found.values() for path, finding, _ in entries)
    assert [k for k, n in keys.items() if n > 1] == []


def test_an_unacknowledged_finding_fails_synth(tmp_path: object) -> None:
    # GIVEN an app with a bucket that breaks several rules (no logging, no SSL policy, no KMS)
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Insecure")
    s3.Bucket(stack, "Plain")
    add_compliance_packs(app)
    # WHEN it synthesizes THEN the compliance packs stop it
    with pytest.raises(RuntimeError, match=r"[Vv]alidation"):
        app.synth()
