"""Services acting for this account only: the confused-deputy guard of AWS's guides.

A service principal in a role's trust policy or a resource policy acts for any account that
points the service at the role or resource, unless the statement names the source: the account
(``aws:SourceAccount``) and, where the service's guide gives one, the resources acting
(``aws:SourceArn``). ``tests/test_templates.py`` holds every such statement of the app to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws
from aws_cdk import aws_iam as iam


def for_this_account(source_arns: str | Sequence[str] = ()) -> dict[str, dict[str, object]]:
    """Conditions: the request comes from this account and, if given, from one of ``source_arns``
    (ARN patterns, ``*`` allowed)."""
    conditions: dict[str, dict[str, object]] = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
    arns = [source_arns] if isinstance(source_arns, str) else list(source_arns)
    if arns:
        conditions["ArnLike"] = {"aws:SourceArn": arns[0] if len(arns) == 1 else arns}
    return conditions


def service_for_this_account(service: str, source_arns: str | Sequence[str] = ()) -> iam.ServicePrincipal:
    """``service`` (``states.amazonaws.com``...) assuming a role for this account only, and for the
    resources ``source_arns`` match if given (:func:`for_this_account`)."""
    return iam.ServicePrincipal(service, conditions=for_this_account(source_arns))
