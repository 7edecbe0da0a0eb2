"""Five compliance packs run on every synth; synth fails on any finding not acknowledged."""

from __future__ import annotations

from collections import Counter

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from lake_app import Synth, synthesize

from cdk_constructs.nag import acknowledge, render_resolved
from stacks.compliance import PACK_PREFIXES, add_compliance_packs

#: Acknowledgements per pack and stage configuration. Change these numbers on purpose only: every
#: acknowledgement is a finding a reviewer accepted, with its reason next to the code.
EXPECTED_ACKNOWLEDGEMENTS = {
    # each dataset's Glue job (GL1, GL3) and crawler (GL1): their security configuration is the
    # processing stack's, outside the dataset's nested stack where the rules look
    "sandbox": {
        "AwsSolutions-": 57,
        "NIST.800.53.R5-": 25,
        "HIPAA.Security-": 25,
        "PCI.DSS.321-": 25,
        "Serverless-": 16,
    },
    # prod adds Redshift: the two Spectrum roles, three custom-resource functions, the VPC
    # endpoints' group, the dead-letter queue of the refresh's alert rule, the personas' sign-in
    "prod": {
        "AwsSolutions-": 71,
        "NIST.800.53.R5-": 37,
        "HIPAA.Security-": 37,
        "PCI.DSS.321-": 37,
        "Serverless-": 26,
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


def test_an_acknowledgement_needs_a_reason_of_40_characters(tmp_path: object) -> None:
    # GIVEN a bucket whose missing access logs are to be acknowledged
    bucket = s3.Bucket(cdk.Stack(cdk.App(outdir=str(tmp_path)), "Acknowledged"), "Plain")
    # WHEN the reason is one character short of 40 THEN it is refused, naming the finding
    with pytest.raises(ValueError, match=r"acknowledgement of \('AwsSolutions-S1',\) needs a real reason"):
        acknowledge(bucket, "r" * 39, "AwsSolutions-S1")
    # AND at 40 it is recorded
    acknowledge(bucket, "r" * 40, "AwsSolutions-S1")
    (entry,) = [e for e in bucket.node.metadata if e.type == "aws:cdk:acknowledged-rules"]
    assert list(entry.data.values()) == ["r" * 40]


def test_a_resolved_value_is_rendered_as_cdk_nag_prints_it_in_a_finding_id() -> None:
    # Finding ids to acknowledge are built from these renderings (e.g. a wildcard resource's ARN).
    joined = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":s3:::",
                {"Fn::GetAtt": ["Raw", "Arn"]},
                "/",
                {"Fn::ImportValue": "x"},
            ],
        ]
    }
    assert render_resolved(joined) == "arn:<AWS::Partition>:s3:::<Raw.Arn>/<x>"
    # A form it does not know is refused by name, never rendered into an id that matches nothing.
    for unknown in ({"Fn::Sub": "arn:${AWS::Partition}"}, ["a"], 3):
        with pytest.raises(ValueError, match=r"cannot render .* as cdk-nag does"):
            render_resolved(unknown)
