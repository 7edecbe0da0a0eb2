"""The compliance packs every synth runs, as CDK ``Validations`` plugins (cdk-nag 3)."""

from __future__ import annotations

from aws_cdk import App, Validations
from cdk_nag import (
    AwsSolutionsChecks,
    HIPAASecurityChecks,
    NIST80053R5Checks,
    PCIDSS321Checks,
    ServerlessChecks,
)

#: Rule-id prefixes of the packs, as they appear in acknowledgements.
PACK_PREFIXES = ("AwsSolutions-", "NIST.800.53.R5-", "HIPAA.Security-", "PCI.DSS.321-", "Serverless-")


def add_compliance_packs(app: App) -> None:
    """Synth fails on any finding of these packs that is not acknowledged next to its code."""
    validations = Validations.of(app)
    for pack in (
        AwsSolutionsChecks,
        NIST80053R5Checks,
        HIPAASecurityChecks,
        PCIDSS321Checks,
        ServerlessChecks,
    ):
        validations.add_plugins(pack(app))
