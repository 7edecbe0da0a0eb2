"""Custom resource: a Redshift Serverless usage limit (CloudFormation has no resource for it).

Properties: ``WorkgroupArn``, ``AmountRpuHours``, ``Period`` (daily, weekly, monthly) and
``BreachAction`` (log, emit-metric, deactivate). The usage type and resource of a limit cannot
change, so an update changes amount and breach action in place, or replaces the limit when the
workgroup, or the period, changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from cfn import Outcome, ResourceError, aws_client, aws_error, handle

PERIODS = ("daily", "weekly", "monthly")
ACTIONS = ("log", "emit-metric", "deactivate")


def _client() -> Any:
    return aws_client("redshift-serverless")


def _args(props: Mapping[str, Any]) -> tuple[int, str, str]:
    try:
        amount = int(props["AmountRpuHours"])
    except (KeyError, ValueError):
        raise ResourceError(
            f"AmountRpuHours={props.get('AmountRpuHours')!r}: use a whole number of RPU-hours"
        ) from None
    if amount < 1:
        raise ResourceError(f"AmountRpuHours={amount}: use at least 1")
    period, action = str(props.get("Period", "monthly")), str(props.get("BreachAction", "emit-metric"))
    if period not in PERIODS:
        raise ResourceError(f"Period={period!r}: use one of {', '.join(PERIODS)}")
    if action not in ACTIONS:
        raise ResourceError(f"BreachAction={action!r}: use one of {', '.join(ACTIONS)}")
    return amount, period, action


def _call(action: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        raise ResourceError(f"Redshift Serverless {action} failed: {aws_error(exc)}") from exc


def create(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    amount, period, action = _args(props)
    limit = _call(
        "CreateUsageLimit",
        _client().create_usage_limit,
        resourceArn=props["WorkgroupArn"],
        usageType="serverless-compute",
        amount=amount,
        period=period,
        breachAction=action,
    )["usageLimit"]
    return Outcome(limit["usageLimitId"], {"UsageLimitArn": limit.get("usageLimitArn", "")})


def update(
    physical_id: str, props: Mapping[str, Any], old: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    amount, period, action = _args(props)
    if props.get("WorkgroupArn") != old.get("WorkgroupArn") or period != old.get("Period", "monthly"):
        return create(props, event)  # CloudFormation deletes the old limit afterwards
    _call(
        "UpdateUsageLimit",
        _client().update_usage_limit,
        usageLimitId=physical_id,
        amount=amount,
        breachAction=action,
    )
    return Outcome(physical_id)


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    if physical_id.startswith("failed-"):
        return
    try:
        _client().delete_usage_limit(usageLimitId=physical_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise ResourceError(f"Redshift Serverless DeleteUsageLimit failed: {aws_error(exc)}") from exc


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, create=create, update=update, delete=delete)
