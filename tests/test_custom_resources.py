"""Custom-resource handlers: every request type answers CloudFormation, failures say what to fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import cfn
import macie_job
import pytest
from botocore.stub import Stubber

JOB_ID = "0123456789abcdef0123456789abcdef"
PROPS = {
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:f",
    "Name": "lake-sbx-lake-scan",
    "AccountId": "123456789012",
    "Buckets": ["lake-sbx-raw-123456789012-eu-west-1", "lake-sbx-curated-123456789012-eu-west-1"],
    "Frequency": "WEEKLY",
    "SamplingPercentage": "100",
    "CustomDataIdentifierIds": ["cdi-1", "cdi-2"],
    "AllowListIds": ["al-1"],
}


class Replies:
    """Stands in for the pre-signed response URL: records what the handler PUT."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: Any, timeout: int) -> Any:
        assert request.get_method() == "PUT"
        assert timeout == 30
        self.sent.append(json.loads(request.data))
        reply = mock.MagicMock()
        reply.__enter__.return_value.status = 200
        return reply


def event(
    request: str,
    physical: str | None = None,
    props: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "RequestType": request,
        "RequestId": "5f1b2c3d-aaaa-bbbb-cccc-000000000001",
        "ResponseURL": "https://cloudformation-custom-resource-response.example/",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/lake-sbx-governance/1",
        "LogicalResourceId": "MacieClassificationJob",
        "ResourceType": "Custom::MacieClassificationJob",
        "ResourceProperties": props or PROPS,
    }
    if physical:
        e["PhysicalResourceId"] = physical
    if old is not None:
        e["OldResourceProperties"] = old
    return e


@pytest.fixture
def macie() -> Iterator[Stubber]:
    client = boto3.client("macie2", region_name="eu-west-1")
    with Stubber(client) as stubber, mock.patch.object(macie_job, "_client", return_value=client):
        yield stubber
        stubber.assert_no_pending_responses()


def run(e: dict[str, Any]) -> dict[str, Any]:
    replies = Replies()
    context = mock.Mock(log_stream_name="2026/11/21/[$LATEST]abc")
    returned = cfn.handle(
        e, context, create=macie_job.create, update=macie_job.update, delete=macie_job.delete, opener=replies
    )
    assert replies.sent == [returned], "exactly one answer, the one returned"
    assert returned["RequestId"] == e["RequestId"]
    assert returned["LogicalResourceId"] == e["LogicalResourceId"]
    return returned


def test_create_makes_a_scheduled_job_over_the_buckets(macie: Stubber) -> None:
    expected = {
        "clientToken": "5f1b2c3d-aaaa-bbbb-cccc-000000000001",
        "name": "lake-sbx-lake-scan-5f1b2c3d",
        "description": "Scheduled scan of the lake's buckets",
        "jobType": "SCHEDULED",
        "scheduleFrequency": {"weeklySchedule": {"dayOfWeek": "MONDAY"}},
        "initialRun": True,
        "samplingPercentage": 100,
        "managedDataIdentifierSelector": "RECOMMENDED",
        "customDataIdentifierIds": ["cdi-1", "cdi-2"],
        "allowListIds": ["al-1"],
        "s3JobDefinition": {
            "bucketDefinitions": [{"accountId": "123456789012", "buckets": PROPS["Buckets"]}]
        },
    }
    macie.add_response(
        "create_classification_job",
        {"jobId": JOB_ID, "jobArn": f"arn:aws:macie2:eu-west-1:123456789012:classification-job/{JOB_ID}"},
        expected,
    )
    reply = run(event("Create"))
    assert reply["Status"] == "SUCCESS"
    assert reply["PhysicalResourceId"] == JOB_ID
    assert reply["Data"]["JobId"] == JOB_ID


def test_update_with_new_properties_creates_a_replacement(macie: Stubber) -> None:
    changed = {**PROPS, "Frequency": "DAILY"}
    new_id = "f" * 32
    macie.add_response(
        "create_classification_job",
        {"jobId": new_id, "jobArn": "arn:aws:macie2:eu-west-1:123456789012:classification-job/x"},
    )
    reply = run(event("Update", JOB_ID, changed, old=PROPS))
    assert reply["Status"] == "SUCCESS"
    # A new physical id: CloudFormation then deletes (cancels) the old job.
    assert reply["PhysicalResourceId"] == new_id


def test_update_without_changes_keeps_the_job(macie: Stubber) -> None:
    reply = run(event("Update", JOB_ID, PROPS, old=PROPS))
    assert (reply["Status"], reply["PhysicalResourceId"]) == ("SUCCESS", JOB_ID)


def test_delete_cancels_a_running_job(macie: Stubber) -> None:
    macie.add_response("describe_classification_job", {"jobStatus": "RUNNING"}, {"jobId": JOB_ID})
    macie.add_response("update_classification_job", {}, {"jobId": JOB_ID, "jobStatus": "CANCELLED"})
    assert run(event("Delete", JOB_ID))["Status"] == "SUCCESS"


@pytest.mark.parametrize("status", ["CANCELLED", "COMPLETE"])
def test_delete_of_a_finished_job_is_a_no_op(macie: Stubber, status: str) -> None:
    macie.add_response("describe_classification_job", {"jobStatus": status}, {"jobId": JOB_ID})
    assert run(event("Delete", JOB_ID))["Status"] == "SUCCESS"


def test_delete_of_a_job_that_is_gone_succeeds(macie: Stubber) -> None:
    macie.add_client_error("describe_classification_job", "ResourceNotFoundException", "no such job")
    assert run(event("Delete", JOB_ID))["Status"] == "SUCCESS"


def test_delete_after_a_failed_create_calls_nothing(macie: Stubber) -> None:
    # Rollback of a failed Create sends Delete with the placeholder id the handler gave.
    assert run(event("Delete", "failed-5f1b2c3d-aaaa-bbbb-cccc-000000000001"))["Status"] == "SUCCESS"


def test_create_when_macie_is_off_fails_with_what_to_do(macie: Stubber) -> None:
    macie.add_client_error(
        "create_classification_job", "AccessDeniedException", "Macie is not enabled for this account", 403
    )
    reply = run(event("Create"))
    assert reply["Status"] == "FAILED"
    assert reply["PhysicalResourceId"] == "failed-5f1b2c3d-aaaa-bbbb-cccc-000000000001"
    assert reply["Reason"].startswith(
        "Macie CreateClassificationJob failed: AccessDeniedException: Macie is not enabled"
    )
    assert "features.macie_reuse_session" in reply["Reason"]
    assert reply["Reason"].endswith("(log stream 2026/11/21/[$LATEST]abc)")


def test_cancel_failure_is_reported(macie: Stubber) -> None:
    macie.add_response("describe_classification_job", {"jobStatus": "RUNNING"}, {"jobId": JOB_ID})
    macie.add_client_error("update_classification_job", "ThrottlingException", "slow down", 429)
    reply = run(event("Delete", JOB_ID))
    assert reply["Status"] == "FAILED"
    assert "Macie UpdateClassificationJob failed: ThrottlingException: slow down" in reply["Reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Frequency": "HOURLY"}, "Frequency='HOURLY': use one of DAILY, WEEKLY, MONTHLY"),
        ({"Buckets": []}, "Buckets is empty"),
        ({"SamplingPercentage": "0"}, "SamplingPercentage=0: use 1-100"),
        ({"SamplingPercentage": "most"}, "SamplingPercentage='most': use 1-100"),
    ],
)
def test_bad_properties_fail_before_calling_macie(
    macie: Stubber, change: dict[str, Any], message: str
) -> None:
    reply = run(event("Create", props={**PROPS, **change}))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(message)


def test_a_bug_still_answers_cloudformation() -> None:
    def broken(props: Any, e: Any) -> cfn.Outcome:
        raise KeyError("Name")

    replies = Replies()
    reply = cfn.handle(
        event("Create"), None, create=broken, update=macie_job.update, delete=macie_job.delete, opener=replies
    )
    assert reply["Status"] == "FAILED"
    assert reply["Reason"] == "KeyError: 'Name'"
    assert len(json.dumps(reply)) < 4096
