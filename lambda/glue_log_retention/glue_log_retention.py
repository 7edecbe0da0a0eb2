"""Sets the stage's retention on a log group that one of the lake's Glue jobs or crawlers created.

Glue creates its log groups itself, at the first write of a run, so no stack owns them and they
would keep every line forever. With a security configuration that encrypts CloudWatch Logs, as
the lake's has, each role and configuration gets groups of its own
(``/aws-glue/jobs-<role>-<configuration>/...``: Glue's reference of ``JobRun.LogGroupName``).
An EventBridge rule hands this function CloudTrail's record of such a ``CreateLogGroup``; the
function sets ``RETENTION_DAYS``, the retention of every other log group of the stage.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

#: Where Glue creates its log groups; the function's role may set retention there alone.
GLUE_LOG_GROUPS = "/aws-glue/"

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def _client() -> Any:
    return boto3.client("logs")


def log_group_of(event: dict[str, Any]) -> str:
    """The log group a CloudTrail ``CreateLogGroup`` event (as EventBridge delivers it) created."""
    name = event.get("detail", {}).get("requestParameters", {}).get("logGroupName")
    if not isinstance(name, str) or not name.startswith(GLUE_LOG_GROUPS):
        # the rule hands over Glue's groups alone: anything else is a rule changed by hand
        raise ValueError(f"not a log group under {GLUE_LOG_GROUPS}: {name!r}")
    return name


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = log_group_of(event)
    days = int(os.environ["RETENTION_DAYS"])
    try:
        _client().put_retention_policy(logGroupName=name, retentionInDays=days)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            # the errors alarm sends whoever is on call here: name the group to set by hand
            logger.error("could not set the retention of log group %s: %s", name, error)
            raise  # Lambda tries twice more
        logger.warning("log group %s is gone already; nothing to keep", name)
        return {"logGroup": name, "retentionInDays": None}
    logger.info("log group %s now keeps its events for %d days", name, days)
    return {"logGroup": name, "retentionInDays": days}
