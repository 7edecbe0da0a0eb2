"""The function that sets the stage's retention on a log group Glue created for the lake, run
against moto's CloudWatch Logs with the CloudTrail event EventBridge hands it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import glue_log_retention
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from conftest import EVENTS
from fakes import LambdaContext
from moto import mock_aws

EVENT = json.loads((EVENTS / "cloudtrail_create_log_group.json").read_text())
GROUP = EVENT["detail"]["requestParameters"]["logGroupName"]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("RETENTION_DAYS", "30")
    with mock_aws():
        yield boto3.client("logs")


def _retention(logs: Any, name: str) -> int | None:
    (group,) = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return group.get("retentionInDays")


def test_the_log_group_glue_created_keeps_its_events_for_the_stages_retention(logs: Any) -> None:
    # GIVEN the group Glue created for a job run, as it creates them: no retention
    logs.create_log_group(logGroupName=GROUP)
    assert _retention(logs, GROUP) is None
    # WHEN EventBridge hands over CloudTrail's record of its creation
    result = glue_log_retention.lambda_handler(EVENT, LambdaContext("glue-log-retention"))
    # THEN the group keeps its events for the stage's days, and the result says which
    assert _retention(logs, GROUP) == 30
    assert result == {"logGroup": GROUP, "retentionInDays": 30}


def test_a_group_deleted_before_the_call_is_no_failure(logs: Any) -> None:
    # nothing is kept, so nothing to expire: no error, and so no retry and no alarm
    result = glue_log_retention.lambda_handler(EVENT, LambdaContext("glue-log-retention"))
    assert result == {"logGroup": GROUP, "retentionInDays": None}


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ServiceUnavailableException", "AccessDeniedException"]
)
def test_any_other_failure_fails_the_invocation_so_lambda_retries_and_the_alarm_counts_it(
    code: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "30")
    client = boto3.client("logs", region_name="eu-west-1")
    with Stubber(client) as stubber, mock.patch.object(glue_log_retention, "_client", return_value=client):
        stubber.add_client_error("put_retention_policy", service_error_code=code)
        with pytest.raises(ClientError, match=code):
            glue_log_retention.lambda_handler(EVENT, LambdaContext("glue-log-retention"))
    # and its log names the group, which the runbook sets by hand if no retry did
    (logged,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert GROUP in logged.getMessage() and code in logged.getMessage()


@pytest.mark.parametrize("name", ["/ecs/lake-sbx-orders", None, 7])
def test_an_event_for_a_group_outside_glues_is_refused_naming_it(logs: Any, name: object) -> None:
    # the rule hands over Glue's groups alone: anything else is a rule changed by hand
    event = copy.deepcopy(EVENT)
    event["detail"]["requestParameters"]["logGroupName"] = name
    with pytest.raises(ValueError, match=f"not a log group under /aws-glue/: {name!r}"):
        glue_log_retention.lambda_handler(event, LambdaContext("glue-log-retention"))
