"""Acknowledging cdk-nag 3 findings next to the code that needs them.

Each acknowledgement names one exact finding and carries a reason a security reviewer would
accept. ``tests/test_compliance.py`` counts them per pack, so the number only grows on purpose.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct

#: The three regulatory packs share rule names; one reason covers the same control in each.
REGULATORY_PACKS = ("NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321")


def acknowledge(construct: IConstruct, reason: str, *finding_ids: str) -> None:
    """Acknowledge exact findings, e.g. ``AwsSolutions-IAM5[Action::s3:GetObject*]``."""
    if len(reason) < 40:
        raise ValueError(f"acknowledgement of {finding_ids} needs a real reason, got {reason!r}")
    Validations.of(construct).acknowledge(*(Acknowledgment(id=f, reason=reason) for f in finding_ids))


def acknowledge_regulatory(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``S3BucketReplicationEnabled``) in the NIST, HIPAA and PCI packs."""
    acknowledge(construct, reason, *(f"{pack}-{rule}" for pack in REGULATORY_PACKS))


def rendered(scope: IConstruct, value: str) -> str:
    """``value`` as cdk-nag prints it in finding ids: ``Ref`` as ``<AWS::Region>``, ``GetAtt`` as ``<Id.Attr>``."""
    return render_resolved(Stack.of(scope).resolve(value))


def render_resolved(token: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it."""
    if isinstance(token, str):
        return token
    if isinstance(token, dict) and "Ref" in token:
        return f"<{token['Ref']}>"
    if isinstance(token, dict) and "Fn::GetAtt" in token:
        return f"<{'.'.join(token['Fn::GetAtt'])}>"
    if isinstance(token, dict) and "Fn::ImportValue" in token:
        return f"<{token['Fn::ImportValue']}>"
    if isinstance(token, dict) and "Fn::Join" in token:
        sep, parts = token["Fn::Join"]
        return sep.join(render_resolved(p) for p in parts)
    raise ValueError(f"cannot render {token!r} as cdk-nag does")


def wildcard_findings(policy: iam.ManagedPolicy | iam.Policy) -> list[str]:
    """The ``AwsSolutions-IAM5`` finding id of every wildcard action and resource in ``policy``.

    For policies whose wildcards are all deliberate; the reason given with them must say why.
    """
    found: list[str] = []
    for statement in Stack.of(policy).resolve(policy.document)["Statement"]:
        for kind in ("Action", "Resource"):
            values = statement.get(kind, [])
            for value in values if isinstance(values, list) else [values]:
                text = render_resolved(value)
                if "*" in text:
                    found.append(f"AwsSolutions-IAM5[{kind}::{text}]")
    return list(dict.fromkeys(found))
