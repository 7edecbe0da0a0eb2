"""Whether the lake's CloudTrail trail logs what it should and delivers; run every hour, counted
for an alarm.

CloudTrail publishes no metric of its own deliveries. ``GetTrailStatus`` says whether the trail
logs, and when it last delivered log files to S3, digest files to S3 and events to CloudWatch
Logs, with the last error of each. Every hour has events to deliver (this check's own call is a
management event the trail logs), so a delivery older than :data:`MAX_SILENCE` is a fault,
reported with that delivery's last error. An error followed by a delivery since is logged and not
counted: the field keeps the last error, not when it happened.

A trail can log and deliver while no longer logging what the lake needs: ``GetEventSelectors``
shows whether it still logs every management event, the S3 data events (reads and writes) of
each lake bucket (``DATA_EVENT_PREFIXES``) and the object writes of each bucket watched for them
(``WRITE_EVENT_PREFIXES``: the CDK assets bucket), in the basic selectors the lake declares;
advanced selectors in their place are a fault too, as they differ from what the lake declares.

Each run logs what it found and publishes ``TrailChecksPassed`` (1, or 0 with a fault; EMF, by
Powertools); the alarm fires when no check passed for two hours, which also catches a check
that did not run or failed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
metrics = Metrics()

#: The longest a delivery may be late. CloudTrail delivers log files and CloudWatch Logs events
#: within minutes of the calls, and digest files once an hour: two hours leave an hour's margin.
MAX_SILENCE = timedelta(hours=2)
#: What the lake's trail delivers (its file validation and CloudWatch Logs are on): what, when
#: last, last error.
DELIVERIES = (
    ("log files to S3", "LatestDeliveryTime", "LatestDeliveryError"),
    ("digest files to S3", "LatestDigestDeliveryTime", "LatestDigestDeliveryError"),
    ("events to CloudWatch Logs", "LatestCloudWatchLogsDeliveryTime", "LatestCloudWatchLogsDeliveryError"),
)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def faults(status: dict[str, Any], now: datetime) -> list[str]:
    """What is wrong with a trail, from its ``GetTrailStatus`` (times as boto3 gives them, aware)."""
    if not status.get("IsLogging"):
        stopped = status.get("StopLoggingTime")
        return ["not logging" + (f" (stopped at {_when(stopped)})" if stopped else "")]
    started = status.get("StartLoggingTime")
    if started is not None and now - started < MAX_SILENCE:
        return []  # logging for less than the longest silence: nothing can be late yet
    found = []
    for what, time_field, error_field in DELIVERIES:
        last = status.get(time_field)
        if last is None or now - last > MAX_SILENCE:
            since = f"last at {_when(last)}" if last is not None else "none yet"
            error = status.get(error_field)
            found.append(
                f"no {what} for over {MAX_SILENCE.total_seconds() / 3600:g} hours ({since})"
                + (f"; last error: {error}" if error else "")
            )
    return found


def _logged_objects(selectors: list[dict[str, Any]]) -> set[str]:
    """The S3 object prefixes (``arn:aws:s3:::<bucket>/``) whose events ``selectors`` log."""
    return {
        value
        for s in selectors
        for resource in s.get("DataResources", [])
        if resource.get("Type") == "AWS::S3::Object"
        for value in resource.get("Values", [])
    }


def selector_faults(selectors: dict[str, Any], prefixes: list[str], written: Sequence[str] = ()) -> list[str]:
    """What the trail no longer logs, from its ``GetEventSelectors``: every management event,
    each of ``prefixes``' S3 object events (``arn:aws:s3:::<bucket>/``), reads and writes, and the
    object writes of each of ``written``."""
    if selectors.get("AdvancedEventSelectors"):
        return ["advanced event selectors replace the ones the lake declares"]
    basic = selectors.get("EventSelectors", [])
    every = [s for s in basic if s.get("ReadWriteType") == "All"]
    found = []
    if not any(s.get("IncludeManagementEvents") for s in every):
        found.append("not every management event is logged")
    # "arn:aws:s3" stands for every bucket's objects (CloudTrail's selector syntax)
    any_bucket = {"arn:aws:s3", "arn:aws:s3:::"}
    logged = _logged_objects(every)
    for prefix in prefixes:
        if prefix not in logged and not logged & any_bucket:
            found.append(f"no S3 data events (reads and writes) for {prefix}")
    writes = _logged_objects([s for s in basic if s.get("ReadWriteType") in ("All", "WriteOnly")])
    for prefix in written:
        if prefix not in writes and not writes & any_bucket:
            found.append(f"no S3 object writes logged for {prefix}")
    return found


def earlier_errors(status: dict[str, Any]) -> dict[str, str]:
    """The last error of each delivery, which may be older than its last success."""
    return {what: status[error] for what, _, error in DELIVERIES if status.get(error)}


def _client() -> Any:
    return boto3.client("cloudtrail")


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    trail = os.environ["TRAIL_NAME"]
    prefixes = [p for p in os.environ.get("DATA_EVENT_PREFIXES", "").split(",") if p]
    written = [p for p in os.environ.get("WRITE_EVENT_PREFIXES", "").split(",") if p]
    client = _client()
    status = client.get_trail_status(Name=trail)
    found = faults(status, datetime.now(UTC))
    found += selector_faults(client.get_event_selectors(TrailName=trail), prefixes, written)
    if found:
        logger.error(
            "the trail does not log or deliver what it should", extra={"trail": trail, "faults": found}
        )
    elif errors := earlier_errors(status):
        logger.warning(
            "an earlier delivery failed; the trail has delivered since",
            extra={"trail": trail, "errors": errors},
        )
    else:
        logger.info("the trail logs what it should and delivers", extra={"trail": trail})
    metrics.add_dimension(name="trail", value=trail)
    metrics.add_metric(name="TrailChecksPassed", unit=MetricUnit.Count, value=0 if found else 1)
    return {"trail": trail, "faults": found}
