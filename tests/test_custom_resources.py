"""Custom-resource handlers: every request type answers CloudFormation, failures say what to fix."""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import cfn
import macie_job
import macie_results as macie_results_module
import pytest
import redshift_sql
import redshift_usage_limit
import shared_log_groups
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from cdk_constructs.warehouse import BREACH_ACTIONS
from config.stages import MACIE_JOB_FREQUENCIES, REDSHIFT_USAGE_LIMIT_ACTIONS

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
        assert timeout == cfn.SEND_TIMEOUT
        # as AWS's cfn-response module sends it: the URL is pre-signed for no content type
        assert request.get_header("Content-type") == ""
        assert request.get_header("Content-length") == str(len(request.data))
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


def _stubbed_macie(module: Any) -> Iterator[Stubber]:
    """A stubbed macie2 client in place of ``module``'s; every stubbed call must be made."""
    client = boto3.client("macie2", region_name="eu-west-1")
    with Stubber(client) as stubber, mock.patch.object(module, "_client", return_value=client):
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def macie() -> Iterator[Stubber]:
    yield from _stubbed_macie(macie_job)


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
    # ServiceTimeout is CloudFormation's own: set or changed, the job stays (no new scan)
    reply = run(event("Update", JOB_ID, {**PROPS, "ServiceTimeout": "600"}, old=PROPS))
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
        ({"SamplingPercentage": "101"}, "SamplingPercentage=101: use 1-100"),
        ({"SamplingPercentage": "most"}, "SamplingPercentage='most': use 1-100"),
    ],
)
def test_bad_properties_fail_before_calling_macie(
    macie: Stubber, change: dict[str, Any], message: str
) -> None:
    reply = run(event("Create", props={**PROPS, **change}))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(message)


@pytest.mark.parametrize(
    ("change", "schedule", "sampling"),
    [
        ({"Frequency": "monthly", "SamplingPercentage": "1"}, {"monthlySchedule": {"dayOfMonth": 1}}, 1),
        ({"Frequency": "Daily", "SamplingPercentage": 100}, {"dailySchedule": {}}, 100),
    ],
)
def test_each_frequency_and_sampling_bound_is_taken(
    change: dict[str, Any], schedule: dict[str, Any], sampling: int
) -> None:
    request = macie_job._job_request({**PROPS, **change}, "5f1b2c3d-aaaa")
    assert (request["scheduleFrequency"], request["samplingPercentage"]) == (schedule, sampling)


def test_a_stage_file_takes_exactly_the_choices_the_custom_resources_take() -> None:
    # A choice the stage file takes and the custom resource refuses fails at deploy, not at synth;
    # one the custom resource takes and the stage file refuses cannot be chosen. The warehouse
    # describes what each breach action does in its usage-limit alarm.
    assert list(MACIE_JOB_FREQUENCIES) == list(macie_job.FREQUENCIES)
    assert list(REDSHIFT_USAGE_LIMIT_ACTIONS) == list(redshift_usage_limit.ACTIONS) == list(BREACH_ACTIONS)


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (
            "ServiceQuotaExceededException",
            "Macie is not enabled",
            " Enable Macie in this account and region, or set features.macie_reuse_session.",
        ),
        (
            "AccessDeniedException",
            "User is not authorized",
            " Check that Macie is enabled here and the function's role allows this action.",
        ),
        ("ThrottlingException", "Macie is not enabled", ""),
    ],
)
def test_a_macie_error_says_what_to_do_where_its_code_tells(code: str, message: str, hint: str) -> None:
    error = ClientError({"Error": {"Code": code, "Message": message}}, "CreateClassificationJob")
    explained = str(macie_job._explain("CreateClassificationJob", error))
    assert explained == f"Macie CreateClassificationJob failed: {code}: {message}.{hint}"


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


def test_a_failed_answer_is_sent_again_and_only_the_last_failure_is_raised() -> None:
    # GIVEN a response URL that refuses the first two PUTs (a reset, then S3's 503)
    failures: list[OSError] = [
        ConnectionResetError("reset by peer"),
        urllib.error.HTTPError("https://r", 503, "Slow Down", {}, None),  # type: ignore[arg-type]
    ]
    replies, tried = Replies(), []

    def flaky(request: Any, timeout: int) -> Any:
        tried.append(json.loads(request.data))
        if failures:
            raise failures.pop(0)
        return replies(request, timeout)

    waits: list[float] = []
    response = {"Status": "SUCCESS", "RequestId": "r-1"}
    # WHEN the answer is sent THEN the third attempt delivers it, after waiting 1 s, then 2 s
    cfn.send("https://r", response, flaky, waits.append)
    assert (tried, replies.sent, waits) == ([response] * 3, [response], [1, 2])

    # AND when every attempt fails, the last failure is raised (the function's log shows it)
    def down(request: Any, timeout: int) -> Any:
        raise urllib.error.URLError("no route to host")

    waits.clear()
    with pytest.raises(urllib.error.URLError, match="no route to host"):
        cfn.send("https://r", response, down, waits.append)
    assert waits == [1, 2]


def test_a_long_reason_keeps_its_first_line_cut_to_1000_characters_and_names_the_log() -> None:
    # GIVEN an error whose first line is 5,000 characters, with more lines after it
    def failing(props: Any, e: Any) -> cfn.Outcome:
        raise cfn.ResourceError("e" * 5000 + "\nsecond line")

    context = mock.Mock(log_stream_name="2026/11/21/[$LATEST]abc")
    reply = cfn.handle(
        event("Create"),
        context,
        create=failing,
        update=macie_job.update,
        delete=macie_job.delete,
        opener=Replies(),
    )
    # THEN the answer holds its first 1,000 characters and where the whole of it was logged
    assert reply["Reason"] == "e" * 1000 + " (log stream 2026/11/21/[$LATEST]abc)"
    # ...the answer stays under CloudFormation's 4 KB, and its data is not hidden (nothing secret)
    assert len(json.dumps(reply)) < 4096
    assert reply["NoEcho"] is False


# --- Redshift bootstrap SQL ----------------------------------------------------------------


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift!lake-prd-warehouse-lake_admin-AbCdEf"
SQL_PROPS = {
    "WorkgroupName": "lake-prd-warehouse",
    "NamespaceName": "lake-prd-warehouse",
    "Database": "lake",
    "Statements": [
        "CREATE EXTERNAL SCHEMA IF NOT EXISTS curated FROM DATA CATALOG DATABASE 'db' IAM_ROLE 'arn';",
        "-- ok-if-exists\nCREATE ROLE analyst;",
    ],
}


@pytest.fixture
def redshift() -> Iterator[tuple[Stubber, Stubber]]:
    data = boto3.client("redshift-data", region_name="eu-west-1")
    serverless = boto3.client("redshift-serverless", region_name="eu-west-1")
    with (
        Stubber(data) as data_stub,
        Stubber(serverless) as serverless_stub,
        mock.patch.object(redshift_sql, "_client", return_value=data),
        mock.patch.object(redshift_sql, "_namespaces", return_value=serverless),
        mock.patch.object(redshift_usage_limit, "_client", return_value=serverless),
        mock.patch("time.sleep"),
    ):
        yield data_stub, serverless_stub
        data_stub.assert_no_pending_responses()
        serverless_stub.assert_no_pending_responses()


def _namespace(stub: Stubber) -> None:
    stub.add_response(
        "get_namespace",
        {"namespace": {"namespaceName": "lake-prd-warehouse", "adminPasswordSecretArn": SECRET}},
        {"namespaceName": "lake-prd-warehouse"},
    )


def _statement(stub: Stubber, sql: str, statement_id: str, *statuses: tuple[str, str | None]) -> None:
    stub.add_response(
        "execute_statement",
        {"Id": statement_id},
        {
            "WorkgroupName": "lake-prd-warehouse",
            "Database": "lake",
            "SecretArn": SECRET,
            "Sql": sql,
            "StatementName": "lake-bootstrap",
        },
    )
    for status, error in statuses:
        reply: dict[str, Any] = {"Id": statement_id, "Status": status}
        if error:
            reply["Error"] = error
        stub.add_response("describe_statement", reply, {"Id": statement_id})


class Clock:
    """Stands in for the ``time`` module: a monotonic clock that moves only when the code sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def run_sql(e: dict[str, Any], *, seconds_left: float = 900.0, clock: Clock | None = None) -> dict[str, Any]:
    """Invoke the bootstrap function's handler with ``seconds_left`` before its timeout."""
    sent: list[dict[str, Any]] = []
    context = mock.Mock(
        log_stream_name="2026/11/21/[$LATEST]abc",
        get_remaining_time_in_millis=lambda: int(seconds_left * 1000),
    )
    with (
        mock.patch.object(redshift_sql, "time", clock or Clock()),
        mock.patch.object(cfn, "send", lambda url, response, opener: sent.append(response)),
    ):
        returned = redshift_sql.handler(e, context)
    assert sent == [returned], "exactly one answer, the one returned"
    return returned


def test_bootstrap_runs_each_statement_and_waits(redshift: tuple[Stubber, Stubber]) -> None:
    data, serverless = redshift
    _namespace(serverless)
    first, second = SQL_PROPS["Statements"]
    _statement(data, first, "s-1", ("SUBMITTED", None), ("STARTED", None), ("FINISHED", None))
    _statement(data, second, "s-2", ("FINISHED", None))
    reply = run_sql(event("Create", props=SQL_PROPS))
    assert reply["Status"] == "SUCCESS"
    assert reply["PhysicalResourceId"] == "lake-prd-warehouse/lake/bootstrap"


def test_ok_if_exists_statement_tolerates_an_existing_object(redshift: tuple[Stubber, Stubber]) -> None:
    data, serverless = redshift
    _namespace(serverless)
    first, second = SQL_PROPS["Statements"]
    _statement(data, first, "s-1", ("FINISHED", None))
    _statement(data, second, "s-2", ("FAILED", 'ERROR: role "analyst" already exists'))
    # an update re-runs everything: the files are written to be re-runnable
    assert (
        run_sql(event("Update", "lake-prd-warehouse/lake/bootstrap", SQL_PROPS, old=SQL_PROPS))["Status"]
        == "SUCCESS"
    )


def test_failing_statement_surfaces_redshifts_error(redshift: tuple[Stubber, Stubber]) -> None:
    data, serverless = redshift
    _namespace(serverless)
    first = SQL_PROPS["Statements"][0]
    _statement(data, first, "s-1", ("FAILED", "ERROR: permission denied for database lake"))
    reply = run_sql(event("Create", props=SQL_PROPS))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(
        "Redshift failed `CREATE EXTERNAL SCHEMA IF NOT EXISTS curated FROM DATA CATALOG DATABASE 'db' IAM_ROLE 'arn';`: "
        "ERROR: permission denied for database lake"
    )


def test_existing_object_without_the_marker_still_fails(redshift: tuple[Stubber, Stubber]) -> None:
    data, serverless = redshift
    _namespace(serverless)
    props = {**SQL_PROPS, "Statements": ["CREATE ROLE analyst;"]}
    _statement(data, "CREATE ROLE analyst;", "s-1", ("FAILED", 'role "analyst" already exists'))
    assert run_sql(event("Create", props=props))["Status"] == "FAILED"


def test_a_statement_still_running_at_the_deadline_fails_naming_its_first_line(
    redshift: tuple[Stubber, Stubber],
) -> None:
    # GIVEN a statement (after its comment lines, a first line of 143 characters) that never ends
    data, _ = redshift
    sql = "-- ok-if-exists\n  -- the analysts' role\n\nCREATE ROLE " + "a" * 130 + ";\nGRANT x TO y;"
    _statement(data, sql, "s-1", *[("STARTED", None)] * 7)
    data.add_response("cancel_statement", {"Status": True}, {"Id": "s-1"})
    clock = Clock()
    # WHEN it is run with 17.5 s left for waiting
    with pytest.raises(cfn.ResourceError) as err:
        redshift_sql.run_statement(
            data.client,
            SQL_PROPS,
            SECRET,
            sql,
            until=clock.now + 17.5,
            clock=clock.monotonic,
            sleep=clock.sleep,
        )
    # THEN it waited with doubling pauses up to 5 s each, as long as a pause still fitted...
    assert clock.waits == [0.5, 1, 2, 4, 5, 5]
    # ...then cancelled it, and names it by its first line of SQL, cut to 120 characters (the time
    # waited shown in whole seconds)
    first = ("CREATE ROLE " + "a" * 130)[:117] + "..."
    assert redshift_sql._first_line("c" * 121) == "c" * 117 + "..."  # 121 are cut
    assert str(err.value) == (
        f"`{first}` still STARTED after 18 s, when the function had to stop waiting to answer in time; "
        "cancelled (statement s-1); the statements are re-runnable: deploy again"
    )
    assert redshift_sql._first_line("-- a comment\n" + "b" * 120) == "b" * 120  # 120 are kept whole


class Statements:
    """A Data API client whose statements run for ``polls[n]`` describes (None: never end)."""

    def __init__(self, *polls: int | None) -> None:
        self.polls = list(polls)
        self.executed: list[str] = []
        self.cancelled: list[str] = []

    def execute_statement(self, **request: Any) -> dict[str, str]:
        self.executed.append(request["Sql"])
        return {"Id": f"s-{len(self.executed)}"}

    def describe_statement(self, Id: str) -> dict[str, str]:
        n = int(Id.removeprefix("s-")) - 1
        left = self.polls[n]
        if left is not None:
            self.polls[n] = left - 1
        return {"Id": Id, "Status": "FINISHED" if left == 0 else "STARTED"}

    def cancel_statement(self, Id: str) -> dict[str, bool]:
        self.cancelled.append(Id)
        return {"Status": True}


def test_a_run_stops_waiting_in_time_to_answer_before_the_function_times_out(
    redshift: tuple[Stubber, Stubber],
) -> None:
    # GIVEN three statements, the second of which never ends, and 300 s left to the function
    _, serverless = redshift
    _namespace(serverless)
    statements = ["CREATE SCHEMA a;", "CREATE ROLE analyst;", "GRANT USAGE ON SCHEMA a TO ROLE analyst;"]
    client, clock = Statements(2, None, 0), Clock()
    start = clock.now
    # WHEN the handler runs them
    with mock.patch.object(redshift_sql, "_client", return_value=client):
        reply = run_sql(
            event("Create", props={**SQL_PROPS, "Statements": statements}), seconds_left=300, clock=clock
        )
    # THEN it waited as long as a pause fitted before the answer's margin, never past it...
    until = start + 300 - redshift_sql.ANSWER_MARGIN
    assert until - 5 < clock.now <= until
    # ...cancelled it and answered FAILED naming it; the third was never started
    assert reply["Status"] == "FAILED"
    assert re.fullmatch(
        r"`CREATE ROLE analyst;` still STARTED after \d+ s, when the function had to stop waiting to "
        r"answer in time; cancelled \(statement s-2\); the statements are re-runnable: deploy again "
        r"\(log stream .+\)",
        reply["Reason"],
    )
    assert client.executed == statements[:2]
    assert client.cancelled == ["s-2"]


def test_a_statement_that_cannot_be_cancelled_is_named_so(redshift: tuple[Stubber, Stubber]) -> None:
    # GIVEN a statement still running at the deadline that has finished by the time it is cancelled
    data, _ = redshift
    _statement(data, "CREATE ROLE analyst;", "s-1", ("STARTED", None))
    data.add_client_error(
        "cancel_statement",
        "ValidationException",
        "Could not cancel a query that is already in FINISHED state",
        expected_params={"Id": "s-1"},
    )
    # WHEN the run gives up on it THEN the answer says so, with Redshift's words
    with pytest.raises(
        cfn.ResourceError,
        match=r"; not cancelled \(ValidationException: Could not cancel a query "
        r"that is already in FINISHED state\) \(statement s-1\);",
    ):
        redshift_sql.run_statement(
            data.client, SQL_PROPS, SECRET, "CREATE ROLE analyst;", until=0.0, clock=lambda: 0.0
        )
    # AND when Redshift cannot be reached to cancel it, that is named too
    client = mock.Mock()
    client.execute_statement.return_value = {"Id": "s-2"}
    client.describe_statement.return_value = {"Id": "s-2", "Status": "STARTED"}
    client.cancel_statement.side_effect = EndpointConnectionError(endpoint_url="https://redshift-data")
    with pytest.raises(
        cfn.ResourceError,
        match=r'; not cancelled \(Could not connect to the endpoint URL: "https://redshift-data"\) \(statement s-2\);',
    ):
        redshift_sql.run_statement(
            client, SQL_PROPS, SECRET, "CREATE ROLE analyst;", until=0.0, clock=lambda: 0.0
        )


def test_the_margin_kept_to_answer_covers_a_last_slow_call_and_the_answer() -> None:
    # The bootstrap's wait stops ANSWER_MARGIN s before the function's timeout. The call in flight
    # and the statement's cancellation then may each still use every attempt to its timeouts (with
    # up to 1 s of backoff between them), and the answer's PUT every attempt to its timeout (1 s,
    # then 2 s apart): all must fit, or CloudFormation never hears back. Every function's clients
    # are bounded alike.
    clients = [m._client() for m in (redshift_sql, macie_job, macie_results_module, redshift_usage_limit)]
    for client in [*clients, redshift_sql._namespaces()]:
        config = client.meta.config
        attempts = config.retries["total_max_attempts"]
        last_call = attempts * (config.connect_timeout + config.read_timeout) + (attempts - 1)
        answer = cfn.SEND_ATTEMPTS * cfn.SEND_TIMEOUT + sum(range(1, cfn.SEND_ATTEMPTS))
        assert 2 * last_call + answer <= redshift_sql.ANSWER_MARGIN


def test_a_run_with_no_time_left_starts_nothing(redshift: tuple[Stubber, Stubber]) -> None:
    # GIVEN less time left to the function than the margin kept to answer
    _, serverless = redshift
    _namespace(serverless)
    client = Statements(0, 0)
    with mock.patch.object(redshift_sql, "_client", return_value=client):
        reply = run_sql(event("Create", props=SQL_PROPS), seconds_left=redshift_sql.ANSWER_MARGIN)
    # THEN no statement ran and the answer says which was next
    assert client.executed == []
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(
        "no time left to start `CREATE EXTERNAL SCHEMA IF NOT EXISTS curated FROM DATA CATALOG DATABASE 'db' "
        "IAM_ROLE 'arn';` (statement 1 of 2); the statements are re-runnable: deploy again"
    )
    # AND with a millisecond more, statements that finish at once all run
    _namespace(serverless)
    client = Statements(0, 0)
    with mock.patch.object(redshift_sql, "_client", return_value=client):
        reply = run_sql(event("Create", props=SQL_PROPS), seconds_left=redshift_sql.ANSWER_MARGIN + 0.001)
    assert reply["Status"] == "SUCCESS"
    assert client.executed == SQL_PROPS["Statements"]


def test_delete_runs_no_sql(redshift: tuple[Stubber, Stubber]) -> None:
    assert run_sql(event("Delete", "lake-prd-warehouse/lake/bootstrap", SQL_PROPS))["Status"] == "SUCCESS"


def test_namespace_without_a_managed_secret_is_explained(redshift: tuple[Stubber, Stubber]) -> None:
    _, serverless = redshift
    serverless.add_response("get_namespace", {"namespace": {"namespaceName": "lake-prd-warehouse"}})
    reply = run_sql(event("Create", props=SQL_PROPS))
    assert reply["Status"] == "FAILED"
    assert "no Redshift-managed admin secret" in reply["Reason"]


# --- Redshift usage limit ------------------------------------------------------------------

LIMIT_PROPS = {
    "WorkgroupArn": "arn:aws:redshift-serverless:eu-west-1:123456789012:workgroup/wg-1",
    "AmountRpuHours": "200",
    "Period": "monthly",
    "BreachAction": "emit-metric",
}


def run_limit(e: dict[str, Any]) -> dict[str, Any]:
    m = redshift_usage_limit
    return cfn.handle(e, None, create=m.create, update=m.update, delete=m.delete, opener=Replies())


def test_usage_limit_create_update_delete(redshift: tuple[Stubber, Stubber]) -> None:
    _, serverless = redshift
    serverless.add_response(
        "create_usage_limit",
        {
            "usageLimit": {
                "usageLimitId": "ul-1",
                "usageLimitArn": "arn:aws:redshift-serverless:eu-west-1:1:usagelimit/ul-1",
            }
        },
        {
            "resourceArn": LIMIT_PROPS["WorkgroupArn"],
            "usageType": "serverless-compute",
            "amount": 200,
            "period": "monthly",
            "breachAction": "emit-metric",
        },
    )
    assert run_limit(event("Create", props=LIMIT_PROPS))["PhysicalResourceId"] == "ul-1"
    serverless.add_response(
        "update_usage_limit",
        {"usageLimit": {}},
        {"usageLimitId": "ul-1", "amount": 300, "breachAction": "deactivate"},
    )
    changed = {**LIMIT_PROPS, "AmountRpuHours": "300", "BreachAction": "deactivate"}
    assert run_limit(event("Update", "ul-1", changed, old=LIMIT_PROPS))["PhysicalResourceId"] == "ul-1"
    serverless.add_response("delete_usage_limit", {"usageLimit": {}}, {"usageLimitId": "ul-1"})
    assert run_limit(event("Delete", "ul-1", LIMIT_PROPS))["Status"] == "SUCCESS"


def test_usage_limit_period_change_replaces_it(redshift: tuple[Stubber, Stubber]) -> None:
    _, serverless = redshift
    serverless.add_response("create_usage_limit", {"usageLimit": {"usageLimitId": "ul-2"}})
    reply = run_limit(event("Update", "ul-1", {**LIMIT_PROPS, "Period": "weekly"}, old=LIMIT_PROPS))
    assert reply["PhysicalResourceId"] == "ul-2"


def test_usage_limit_takes_one_rpu_hour_and_refuses_none(redshift: tuple[Stubber, Stubber]) -> None:
    _, serverless = redshift
    serverless.add_response("create_usage_limit", {"usageLimit": {"usageLimitId": "ul-3"}})
    assert run_limit(event("Create", props={**LIMIT_PROPS, "AmountRpuHours": "1"}))["Status"] == "SUCCESS"
    reply = run_limit(event("Create", props={**LIMIT_PROPS, "AmountRpuHours": "0"}))
    assert reply["Reason"].startswith("AmountRpuHours=0: use at least 1")


def test_usage_limit_delete_of_a_gone_limit_succeeds_and_other_errors_fail(
    redshift: tuple[Stubber, Stubber],
) -> None:
    _, serverless = redshift
    serverless.add_client_error("delete_usage_limit", "ResourceNotFoundException", "no such limit", 404)
    assert run_limit(event("Delete", "ul-1", LIMIT_PROPS))["Status"] == "SUCCESS"
    serverless.add_client_error("delete_usage_limit", "AccessDeniedException", "not allowed", 403)
    reply = run_limit(event("Delete", "ul-1", LIMIT_PROPS))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(
        "Redshift Serverless DeleteUsageLimit failed: AccessDeniedException: not allowed"
    )


def test_usage_limit_rejects_bad_values(redshift: tuple[Stubber, Stubber]) -> None:
    reply = run_limit(event("Create", props={**LIMIT_PROPS, "BreachAction": "shutdown"}))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"] == "BreachAction='shutdown': use one of log, emit-metric, deactivate"


# --- The account's log groups of the warehouse's exported logs -----------------------------------

GROUPS = ["/aws/redshift/serverless/userlog", "/aws/redshift/serverless/useractivitylog"]
GROUPS_PROPS = {"LogGroupNames": GROUPS, "RetentionInDays": "365"}


def run_groups(e: dict[str, Any]) -> dict[str, Any]:
    m = shared_log_groups
    return cfn.handle(e, None, create=m.create, update=m.update, delete=m.delete, opener=Replies())


@pytest.fixture
def logs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("logs", region_name="eu-west-1")


def retention(logs: Any) -> dict[str, int | None]:
    """Each log group of the account with its retention in days (``None``: kept forever)."""
    groups = logs.describe_log_groups()["logGroups"]
    return {g["logGroupName"]: g.get("retentionInDays") for g in groups}


def test_missing_groups_are_created_keeping_their_events_as_long_as_the_stage(logs: Any) -> None:
    # GIVEN an account where no namespace has exported a log yet, and a group of another service
    logs.create_log_group(logGroupName="/aws/redshift/serverless/userlog-archive")
    # WHEN the stage is created
    reply = run_groups(event("Create", props=GROUPS_PROPS))
    # THEN Redshift will write to groups that expire their events after the stage's 365 days
    assert (reply["Status"], reply["PhysicalResourceId"]) == ("SUCCESS", "shared-log-groups")
    assert reply["Data"] == {"RetentionInDays": "365"}
    assert retention(logs) == {
        "/aws/redshift/serverless/userlog": 365,
        "/aws/redshift/serverless/useractivitylog": 365,
        "/aws/redshift/serverless/userlog-archive": None,  # a name that merely starts alike
    }


def test_a_group_redshift_created_forever_or_shorter_gets_the_stages_retention_and_a_longer_stays(
    logs: Any,
) -> None:
    # GIVEN the user log created by Redshift (kept forever) and the activity log kept longer by
    # another stage of the account
    logs.create_log_group(logGroupName=GROUPS[0])
    logs.create_log_group(logGroupName=GROUPS[1])
    logs.put_retention_policy(logGroupName=GROUPS[1], retentionInDays=731)
    # WHEN this stage, which keeps its logs 365 days, is created, then updated to 30 days
    created = run_groups(event("Create", props=GROUPS_PROPS))
    assert retention(logs) == {GROUPS[0]: 365, GROUPS[1]: 731}
    shorter = {**GROUPS_PROPS, "RetentionInDays": "30"}
    updated = run_groups(event("Update", "shared-log-groups", shorter, old=GROUPS_PROPS))
    # THEN no retention got shorter, and the resource says what every group keeps at least
    assert retention(logs) == {GROUPS[0]: 365, GROUPS[1]: 731}
    assert created["Data"] == updated["Data"] == {"RetentionInDays": "365"}
    assert updated["PhysicalResourceId"] == "shared-log-groups"  # nothing for CloudFormation to delete
    # AND a longer retention for the stage raises both
    longer = {**GROUPS_PROPS, "RetentionInDays": "1096"}
    assert run_groups(event("Update", "shared-log-groups", longer, old=shorter))["Status"] == "SUCCESS"
    assert retention(logs) == {GROUPS[0]: 1096, GROUPS[1]: 1096}


def test_deleting_the_stage_leaves_the_accounts_groups_and_their_events(logs: Any) -> None:
    run_groups(event("Create", props=GROUPS_PROPS))
    logs.create_log_stream(logGroupName=GROUPS[0], logStreamName="lake-prd-warehouse")
    reply = run_groups(event("Delete", "shared-log-groups", GROUPS_PROPS))
    assert reply["Status"] == "SUCCESS"
    assert retention(logs) == {GROUPS[0]: 365, GROUPS[1]: 365}
    assert logs.describe_log_streams(logGroupName=GROUPS[0])["logStreams"][0]["logStreamName"] == (
        "lake-prd-warehouse"
    )


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"LogGroupNames": [], "RetentionInDays": "365"}, "LogGroupNames=[]: give a list of log group names"),
        ({"LogGroupNames": GROUPS[0], "RetentionInDays": "365"}, "LogGroupNames='/aws/redshift/serverless"),
        ({"LogGroupNames": GROUPS}, "RetentionInDays=None: use a whole number of days"),
        ({"LogGroupNames": GROUPS, "RetentionInDays": "a year"}, "RetentionInDays='a year': use a whole"),
        ({"LogGroupNames": GROUPS, "RetentionInDays": "0"}, "RetentionInDays=0: use at least 1"),
    ],
)
def test_bad_group_properties_fail_before_calling_cloudwatch_logs(
    logs: Any, props: dict[str, Any], reason: str
) -> None:
    reply = run_groups(event("Create", props=props))
    assert (reply["Status"], reply["Reason"][: len(reason)]) == ("FAILED", reason)
    assert retention(logs) == {}


def test_a_refused_call_fails_naming_the_group_and_cloudwatch_logs_words() -> None:
    client = boto3.client("logs", region_name="eu-west-1")
    with Stubber(client) as stub, mock.patch.object(shared_log_groups, "_client", return_value=client):
        stub.add_client_error("create_log_group", "ResourceAlreadyExistsException", "exists", 400)
        stub.add_response(
            "describe_log_groups",
            {"logGroups": [{"logGroupName": GROUPS[0]}]},
            {"logGroupNamePrefix": GROUPS[0]},
        )
        stub.add_client_error("put_retention_policy", "AccessDeniedException", "not authorized", 403)
        reply = run_groups(event("Create", props={**GROUPS_PROPS, "LogGroupNames": GROUPS[:1]}))
        stub.assert_no_pending_responses()
    assert reply["Status"] == "FAILED"
    assert reply["Reason"] == (
        "CloudWatch Logs on log group /aws/redshift/serverless/userlog failed: "
        "AccessDeniedException: not authorized"
    )


# --- Macie's discovery results repository ------------------------------------------------------

RESULTS_PROPS = {
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:f",
    "Bucket": "lake-sbx-audit-123456789012-eu-west-1",
    "KeyPrefix": "macie-discovery-results",
    "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
RESULTS_DESTINATION = {
    "s3Destination": {
        "bucketName": "lake-sbx-audit-123456789012-eu-west-1",
        "keyPrefix": "macie-discovery-results",
        "kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    }
}


@pytest.fixture
def macie_results() -> Iterator[Stubber]:
    yield from _stubbed_macie(macie_results_module)


def run_results(e: dict[str, Any]) -> dict[str, Any]:
    m = macie_results_module
    return cfn.handle(e, None, create=m.create, update=m.update, delete=m.delete, opener=Replies())


def test_the_results_repository_is_put_on_create_and_update_and_left_on_delete(
    macie_results: Stubber,
) -> None:
    location = "s3://lake-sbx-audit-123456789012-eu-west-1/macie-discovery-results"
    macie_results.add_response(
        "put_classification_export_configuration",
        {"configuration": RESULTS_DESTINATION},
        {"configuration": RESULTS_DESTINATION},
    )
    created = run_results(event("Create", props=RESULTS_PROPS))
    assert (created["Status"], created["PhysicalResourceId"]) == ("SUCCESS", location)
    # a changed prefix is put again, under a new physical id; CloudFormation's delete of the old
    # one then calls nothing (Macie has no call that removes the setting)
    moved = {**RESULTS_PROPS, "KeyPrefix": "macie"}
    macie_results.add_response(
        "put_classification_export_configuration",
        {},
        {"configuration": {"s3Destination": {**RESULTS_DESTINATION["s3Destination"], "keyPrefix": "macie"}}},
    )
    updated = run_results(event("Update", location, props=moved, old=RESULTS_PROPS))
    assert updated["PhysicalResourceId"] == "s3://lake-sbx-audit-123456789012-eu-west-1/macie"
    assert run_results(event("Delete", location, props=RESULTS_PROPS))["Status"] == "SUCCESS"


def test_a_refused_results_repository_fails_naming_the_location_and_both_policies(
    macie_results: Stubber,
) -> None:
    macie_results.add_client_error(
        "put_classification_export_configuration",
        "ValidationException",
        "Macie can't write to the bucket",
    )
    reply = run_results(event("Create", props=RESULTS_PROPS))
    assert reply["Status"] == "FAILED"
    assert reply["Reason"].startswith(
        "Macie PutClassificationExportConfiguration failed: ValidationException: Macie can't write to the bucket."
    )
    assert "s3://lake-sbx-audit-123456789012-eu-west-1/macie-discovery-results" in reply["Reason"]
    assert "bucket policy" in reply["Reason"] and "key policy" in reply["Reason"]


def test_a_results_repository_without_its_key_fails_before_calling_macie(macie_results: Stubber) -> None:
    reply = run_results(event("Create", props={**RESULTS_PROPS, "KmsKeyArn": ""}))
    assert (reply["Status"], reply["Reason"]) == (
        "FAILED",
        "KmsKeyArn missing: name the bucket, its key prefix and the KMS key",
    )
