"""Custom resource: log groups a service shares across the account, kept as long as the stage keeps logs.

Redshift Serverless exports every namespace's logs of a type to one group of the account,
``/aws/redshift/serverless/<log type>``, and creates it at the first event when it does not
exist, with no retention: the user-activity log (every query's text, a value a query named
included) would be kept forever. It writes to a group that exists already (its management guide,
"Monitoring log events in CloudWatch"). No stack can own such a group: another stage of the
account exports to it too, and deleting a stage must not delete the account's audit logs.

Properties: ``LogGroupNames`` (the groups) and ``RetentionInDays`` (the stage's). Create and
Update create each group that is missing and give it ``RetentionInDays`` when it keeps its events
forever or for fewer days; a longer retention (another stage's, or one set by hand) stays, so two
stages in one account keep the longer of their two. Delete changes nothing: the groups and their
events stay until their retention expires them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from cfn import Outcome, ResourceError, aws_client, aws_error, handle

PHYSICAL_ID = "shared-log-groups"


def _client() -> Any:
    return aws_client("logs")


def _args(props: Mapping[str, Any]) -> tuple[list[str], int]:
    names = props.get("LogGroupNames")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ResourceError(f"LogGroupNames={names!r}: give a list of log group names")
    try:
        days = int(props["RetentionInDays"])
    except (KeyError, TypeError, ValueError):
        raise ResourceError(
            f"RetentionInDays={props.get('RetentionInDays')!r}: use a whole number of days"
        ) from None
    if days < 1:
        raise ResourceError(f"RetentionInDays={days}: use at least 1")
    return names, days


def _retention(client: Any, name: str) -> int | None:
    """The group's retention in days; ``None`` when it keeps its events forever."""
    pages = client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    for page in pages:
        for group in page.get("logGroups", []):
            if group.get("logGroupName") == name:
                return group.get("retentionInDays")
    raise ResourceError(f"log group {name} is missing right after CloudWatch Logs said it exists")


def keep(name: str, days: int) -> int:
    """Create ``name`` when it is missing and keep its events at least ``days`` days; the
    retention it has afterwards."""
    client = _client()
    try:
        try:
            client.create_log_group(logGroupName=name)
            current = None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise
            current = _retention(client, name)
        if current is not None and current >= days:
            return current
        client.put_retention_policy(logGroupName=name, retentionInDays=days)
    except ClientError as exc:
        raise ResourceError(f"CloudWatch Logs on log group {name} failed: {aws_error(exc)}") from exc
    return days


def create(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    names, days = _args(props)
    kept = {name: keep(name, days) for name in names}
    # the shortest retention among them: what the stage can rely on every group to keep
    return Outcome(PHYSICAL_ID, {"RetentionInDays": str(min(kept.values()))})


def update(
    physical_id: str, props: Mapping[str, Any], old: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    return create(props, event)  # same physical id: CloudFormation deletes nothing afterwards


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """The groups are the account's: other stages export to them, and their events expire."""


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, create=create, update=update, delete=delete)
