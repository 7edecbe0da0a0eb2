"""Custom resource: a scheduled Macie classification job (CloudFormation has no resource for it).

Properties (strings, as CloudFormation passes them):

* ``Name``: job name prefix; the request id is appended, as a job is replaced, never edited.
* ``AccountId``, ``Buckets``: the buckets to scan.
* ``Frequency``: ``DAILY``, ``WEEKLY`` (Mondays) or ``MONTHLY`` (first day).
* ``CustomDataIdentifierIds``, ``AllowListIds``: our identifiers and allow list.
* ``SamplingPercentage``: share of objects to inspect (1-100).

Macie jobs cannot be changed after creation (except their status), so an update creates a new
job and returns its id; CloudFormation then deletes the old one, which cancels it. Deleting a
job that is already cancelled, complete or gone succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from cfn import Outcome, ResourceError, aws_client, handle

FREQUENCIES = {
    "DAILY": {"dailySchedule": {}},
    "WEEKLY": {"weeklySchedule": {"dayOfWeek": "MONDAY"}},
    "MONTHLY": {"monthlySchedule": {"dayOfMonth": 1}},
}
#: Macie job ids are 32 lower-case hex characters.
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("CANCELLED", "COMPLETE")


def _client() -> Any:
    return aws_client("macie2")


def _job_request(props: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    frequency = str(props.get("Frequency", "WEEKLY")).upper()
    if frequency not in FREQUENCIES:
        raise ResourceError(f"Frequency={frequency!r}: use one of {', '.join(FREQUENCIES)}")
    buckets = list(props.get("Buckets") or [])
    if not buckets:
        raise ResourceError("Buckets is empty: name at least one bucket to scan")
    try:
        sampling = int(props.get("SamplingPercentage", "100"))
    except ValueError:
        raise ResourceError(f"SamplingPercentage={props.get('SamplingPercentage')!r}: use 1-100") from None
    if not 1 <= sampling <= 100:
        raise ResourceError(f"SamplingPercentage={sampling}: use 1-100")
    return {
        "clientToken": request_id,
        "name": f"{props['Name']}-{request_id[:8]}",
        "description": str(props.get("Description", "Scheduled scan of the lake's buckets")),
        "jobType": "SCHEDULED",
        "scheduleFrequency": FREQUENCIES[frequency],
        "initialRun": True,
        "samplingPercentage": sampling,
        "managedDataIdentifierSelector": "RECOMMENDED",
        "customDataIdentifierIds": list(props.get("CustomDataIdentifierIds") or []),
        "allowListIds": list(props.get("AllowListIds") or []),
        "s3JobDefinition": {
            "bucketDefinitions": [{"accountId": str(props["AccountId"]), "buckets": buckets}]
        },
    }


def _explain(action: str, error: ClientError) -> ResourceError:
    code = error.response.get("Error", {}).get("Code", "Unknown")
    message = error.response.get("Error", {}).get("Message", str(error))
    hint = ""
    if (
        code in ("AccessDeniedException", "ServiceQuotaExceededException")
        and "not enabled" in message.lower()
    ):
        hint = " Enable Macie in this account and region, or set features.macie_reuse_session."
    elif code == "AccessDeniedException":
        hint = " Check that Macie is enabled here and the function's role allows this action."
    return ResourceError(f"Macie {action} failed: {code}: {message}.{hint}")


def create(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    request = _job_request(props, event["RequestId"])
    try:
        job = _client().create_classification_job(**request)
    except ClientError as exc:
        raise _explain("CreateClassificationJob", exc) from exc
    return Outcome(job["jobId"], {"JobId": job["jobId"], "JobArn": job["jobArn"], "JobName": request["name"]})


def update(
    physical_id: str, props: Mapping[str, Any], old: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    if props == old and JOB_ID_RE.match(physical_id):
        return Outcome(physical_id, {"JobId": physical_id})
    # A new job; CloudFormation deletes (cancels) the old one after the stack update succeeds.
    return create(props, event)


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    if not JOB_ID_RE.match(physical_id):
        return  # the Create that would have made it failed: nothing to cancel
    client = _client()
    try:
        status = client.describe_classification_job(jobId=physical_id)["jobStatus"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise _explain("DescribeClassificationJob", exc) from exc
    if status in FINISHED:
        return
    try:
        client.update_classification_job(jobId=physical_id, jobStatus="CANCELLED")
    except ClientError as exc:
        raise _explain("UpdateClassificationJob", exc) from exc


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, create=create, update=update, delete=delete)
