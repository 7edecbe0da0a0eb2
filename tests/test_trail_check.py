"""The hourly trail check: what it counts as a fault, and what it publishes for the alarm."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
import trail_check
from botocore.stub import Stubber
from fakes import LambdaContext

from cdk_constructs.audit import TRAIL_CHECK_NAMESPACE, TRAIL_CHECK_SERVICE

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TRAIL = "lake-sbx-audit"


def _status(age: timedelta = timedelta(minutes=10), **changes: Any) -> dict[str, Any]:
    """A trail logging for a day whose three deliveries are ``age`` old."""
    status: dict[str, Any] = {
        "IsLogging": True,
        "StartLoggingTime": NOW - timedelta(days=1),
        "LatestDeliveryTime": NOW - age,
        "LatestDigestDeliveryTime": NOW - age,
        "LatestCloudWatchLogsDeliveryTime": NOW - age,
    }
    status.update(changes)
    return {k: v for k, v in status.items() if v is not None}


def test_a_trail_that_logs_and_delivered_within_two_hours_has_no_fault() -> None:
    assert trail_check.faults(_status(), NOW) == []
    assert trail_check.faults(_status(age=trail_check.MAX_SILENCE), NOW) == []  # on the limit


def test_a_stopped_trail_is_one_fault_naming_when_it_stopped() -> None:
    stopped = _status(IsLogging=False, StopLoggingTime=NOW - timedelta(minutes=5))
    assert trail_check.faults(stopped, NOW) == ["not logging (stopped at 2026-12-07T11:55:00Z)"]
    assert trail_check.faults(_status(IsLogging=False), NOW) == ["not logging"]


def test_each_delivery_late_past_two_hours_is_a_fault_with_its_last_error() -> None:
    # GIVEN log files last delivered 2 h 1 s ago after an AccessDenied, and no digest ever
    status = _status(
        LatestDeliveryTime=NOW - trail_check.MAX_SILENCE - timedelta(seconds=1),
        LatestDeliveryError="AccessDenied",
        LatestDigestDeliveryTime=None,
    )
    # THEN each is named, with when it last came and why it stopped; CloudWatch Logs is on time
    assert trail_check.faults(status, NOW) == [
        "no log files to S3 for over 2 hours (last at 2026-12-07T09:59:59Z); last error: AccessDenied",
        "no digest files to S3 for over 2 hours (none yet)",
    ]


def test_a_trail_that_started_logging_within_two_hours_is_not_late_yet() -> None:
    started = _status(
        StartLoggingTime=NOW - timedelta(minutes=90),
        LatestDeliveryTime=None,
        LatestDigestDeliveryTime=None,
        LatestCloudWatchLogsDeliveryTime=None,
    )
    assert trail_check.faults(started, NOW) == []
    later = {**started, "StartLoggingTime": NOW - timedelta(hours=3)}
    assert len(trail_check.faults(later, NOW)) == 3


def test_an_error_followed_by_a_delivery_is_reported_but_not_a_fault() -> None:
    # the status keeps a delivery's last error after later deliveries succeed
    status = _status(LatestCloudWatchLogsDeliveryError="ThrottlingException")
    assert trail_check.faults(status, NOW) == []
    assert trail_check.earlier_errors(status) == {"events to CloudWatch Logs": "ThrottlingException"}


PREFIXES = [
    "arn:aws:s3:::lake-sbx-raw-123456789012-eu-west-1/",
    "arn:aws:s3:::lake-sbx-curated-123456789012-eu-west-1/",
]
WRITTEN = ["arn:aws:s3:::cdk-hnb659fds-assets-123456789012-eu-west-1/"]


def _selectors(*prefixes: str, management: bool = True, written: tuple[str, ...] = ()) -> dict[str, Any]:
    """Event selectors as the lake declares them: management events, its buckets' objects, then
    the writes of the buckets watched for them."""
    selectors: list[dict[str, Any]] = [
        {"ReadWriteType": "All", "IncludeManagementEvents": management},
        {
            "ReadWriteType": "All",
            "IncludeManagementEvents": False,
            "DataResources": [{"Type": "AWS::S3::Object", "Values": list(prefixes)}],
        },
    ]
    if written:
        selectors.append(
            {
                "ReadWriteType": "WriteOnly",
                "IncludeManagementEvents": False,
                "DataResources": [{"Type": "AWS::S3::Object", "Values": list(written)}],
            }
        )
    return {
        "TrailARN": f"arn:aws:cloudtrail:eu-west-1:123456789012:trail/{TRAIL}",
        "EventSelectors": selectors,
    }


def test_a_trail_that_still_logs_management_and_every_buckets_data_events_has_no_selector_fault() -> None:
    assert trail_check.selector_faults(_selectors(*PREFIXES), PREFIXES) == []
    assert trail_check.selector_faults(_selectors(*PREFIXES, written=(*WRITTEN,)), PREFIXES, WRITTEN) == []
    # CloudTrail's value for every bucket's objects covers the lake's too, writes included
    assert trail_check.selector_faults(_selectors("arn:aws:s3"), PREFIXES, WRITTEN) == []
    # and a bucket watched for writes may be logged for reads and writes
    assert trail_check.selector_faults(_selectors(*PREFIXES, *WRITTEN), PREFIXES, WRITTEN) == []


def test_a_bucket_whose_object_writes_are_no_longer_logged_is_a_fault() -> None:
    # the assets bucket's selector dropped, or turned to reads only: a script overwritten there
    # would no longer reach the alert rule
    fault = f"no S3 object writes logged for {WRITTEN[0]}"
    assert trail_check.selector_faults(_selectors(*PREFIXES), PREFIXES, WRITTEN) == [fault]
    read_only = _selectors(*PREFIXES, written=(*WRITTEN,))
    read_only["EventSelectors"][2]["ReadWriteType"] = "ReadOnly"
    assert trail_check.selector_faults(read_only, PREFIXES, WRITTEN) == [fault]
    # writes alone do not stand for a lake bucket's reads and writes
    writes_only = _selectors(written=(*PREFIXES,))
    assert trail_check.selector_faults(writes_only, PREFIXES) == [
        f"no S3 data events (reads and writes) for {p}" for p in PREFIXES
    ]


def test_each_bucket_whose_data_events_were_dropped_and_management_events_off_are_faults() -> None:
    # GIVEN selectors changed by hand: the curated bucket dropped, management events off
    found = trail_check.selector_faults(_selectors(PREFIXES[0], management=False), PREFIXES)
    assert found == [
        "not every management event is logged",
        f"no S3 data events (reads and writes) for {PREFIXES[1]}",
    ]
    # reads only are not the lake's selectors either
    read_only = _selectors(*PREFIXES)
    read_only["EventSelectors"][1]["ReadWriteType"] = "ReadOnly"
    assert len(trail_check.selector_faults(read_only, PREFIXES)) == 2
    # and advanced selectors in their place are not what the lake declares
    advanced = {"AdvancedEventSelectors": [{"Name": "x", "FieldSelectors": []}]}
    assert trail_check.selector_faults(advanced, PREFIXES) == [
        "advanced event selectors replace the ones the lake declares"
    ]


@pytest.mark.parametrize(
    ("answers", "passed"),
    [
        ((_status(), _selectors(*PREFIXES, written=(*WRITTEN,))), 1),  # logs and delivers what it should
        ((_status(age=timedelta(hours=3)), _selectors(*PREFIXES, written=(*WRITTEN,))), 0),  # deliveries late
        ((_status(), _selectors(PREFIXES[0], written=(*WRITTEN,))), 0),  # a bucket's data events dropped
        ((_status(), _selectors(*PREFIXES)), 0),  # the assets bucket's writes dropped
    ],
)
def test_the_handler_checks_the_trail_it_is_given_and_counts_a_passed_check(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    answers: tuple[dict[str, Any], dict[str, Any]],
    passed: int,
) -> None:
    status, selectors = answers
    # GIVEN the environment the CDK construct sets, and CloudTrail's answers for that trail
    monkeypatch.setenv("TRAIL_NAME", TRAIL)
    monkeypatch.setenv("DATA_EVENT_PREFIXES", ",".join(PREFIXES))
    monkeypatch.setenv("WRITE_EVENT_PREFIXES", ",".join(WRITTEN))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", TRAIL_CHECK_NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", TRAIL_CHECK_SERVICE)
    module = importlib.reload(trail_check)
    client = boto3.client("cloudtrail", region_name="eu-west-1")
    answer = {**status, "ResponseMetadata": {}}
    with (
        Stubber(client) as stubber,
        mock.patch.object(module, "_client", return_value=client),
        mock.patch.object(module, "datetime", wraps=datetime) as clock,
    ):
        clock.now.return_value = NOW
        stubber.add_response("get_trail_status", answer, {"Name": TRAIL})
        stubber.add_response(
            "get_event_selectors", {**selectors, "ResponseMetadata": {}}, {"TrailName": TRAIL}
        )
        # WHEN the schedule invokes it
        result = module.lambda_handler({"trigger": "schedule"}, LambdaContext("trail-check"))
        stubber.assert_no_pending_responses()
    # THEN it returns what it found, logs it, and publishes 1 for a passed check, 0 otherwise,
    # under the namespace and dimensions the alarm reads
    assert result["trail"] == TRAIL and (result["faults"] == []) is bool(passed)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (metrics,) = [p for p in printed if "_aws" in p]
    (published,) = metrics["_aws"]["CloudWatchMetrics"]
    assert published["Namespace"] == TRAIL_CHECK_NAMESPACE
    assert [sorted(d) for d in published["Dimensions"]] == [["service", "trail"]]
    assert (metrics["service"], metrics["trail"]) == (TRAIL_CHECK_SERVICE, TRAIL)
    assert metrics["TrailChecksPassed"] == [float(passed)]
    (logged,) = [r for r in caplog.records if r.name == TRAIL_CHECK_SERVICE]
    if passed:
        assert (logged.levelname, logged.getMessage()) == (
            "INFO",
            "the trail logs what it should and delivers",
        )
    else:
        assert (logged.levelname, logged.getMessage()) == (
            "ERROR",
            "the trail does not log or deliver what it should",
        )
        assert logged.faults == result["faults"]  # type: ignore[attr-defined]
