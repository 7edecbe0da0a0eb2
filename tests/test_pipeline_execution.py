"""The orders pipeline executed offline: the state machine synthesized for the sandbox runs in
moto's Step Functions interpreter (a port of LocalStack's) against moto's Glue, S3, SNS and SQS.

The other processing tests check what the definition declares; these run it. The Glue job is
moto's, except that a run which succeeds writes the run summary the real job would write
(:func:`job.run_summary`, at the job's own ``--run_summary_path``). Glue Data Quality is not in
moto: three small handlers answer its calls with the score a test chooses. Retry delays and
``Wait`` states are recorded instead of slept.

Three gaps of moto 5.2.5's interpreter, all taken over from LocalStack's, are bridged in the
``lake`` fixture, each where AWS's behaviour is documented:

- a ``.sync`` task whose service has no callback pattern crashes once it has finished
  (``interrupt_all`` on ``None``; fixed upstream in localstack/localstack#13705), so the Glue
  integration is given one;
- ``aws-sdk`` results keep S3's ``Body`` as a stream, where Step Functions returns it as text;
- ``aws-sdk`` errors of Glue and S3 are named ``glue.*``/``s3.*``, where Step Functions names them
  ``ServiceName.ErrorName`` in PascalCase (``S3.NoSuchKeyException``, ``Glue.CrawlerRunningException``:
  "AWS SDK service integrations" in the Step Functions developer guide).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import boto3
import moto
import pytest
from cfn_resolve import REGION, Resolver
from job import RunResult, run_summary, summary_key
from lake_app import synthesize
from moto.core.responses import ActionResult
from moto.glue import models as glue_models
from moto.glue.exceptions import GlueClientError
from moto.glue.responses import GlueResponse
from moto.moto_api import state_manager
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_glue as glue_service,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)

from datalake.cost import PIPELINE_TRANSITIONS, PIPELINE_TRANSITIONS_SKIPPING

REBUILT = RunResult(
    rows_read=1204, rows_written=1150, rows_quarantined=4, duplicates_dropped=50, new_objects=3,
    days=[("2024", "05", "01"), ("2024", "05", "02")], curated_days=[("2024", "05", "01"), ("2024", "05", "02")],
    quarantine_days=[("2024", "05", "02")], files_written=2,
)  # fmt: skip
#: Every row of the rebuilt day quarantined: nothing curated to check.
EMPTIED = RunResult(
    rows_read=3, rows_quarantined=3, new_objects=1, days=[("2024", "05", "03")],
    quarantine_days=[("2024", "05", "03")],
)  # fmt: skip
IDLE = RunResult()


@dataclass(frozen=True)
class Deployed:
    """The processing stack's pieces as a deployment would name them."""

    definition: str
    machine_name: str
    machine_role: str
    job: dict[str, Any]
    crawler: dict[str, Any]
    topic_arn: str
    notice_topic_arn: str
    ruleset: str


@pytest.fixture(scope="module")
def deployed() -> Deployed:
    sandbox = synthesize("sandbox")
    stack = sandbox.lake.processing.stack_name
    templates = sandbox.all_templates()
    resolver = Resolver(templates)

    def one(type_: str) -> dict[str, Any]:
        (resource,) = [r for r in templates[stack]["Resources"].values() if r["Type"] == type_]
        return resource

    machine = one("AWS::StepFunctions::StateMachine")["Properties"]
    definition = resolver.resolve(stack, machine["DefinitionString"])
    parsed = json.loads(definition)
    notify = parsed["States"]["NotifyFailure"]["Parameters"]
    return Deployed(
        definition=definition,
        machine_name=machine["StateMachineName"],
        machine_role=resolver.resolve(stack, machine["RoleArn"]),
        job=resolver.resolve(stack, one("AWS::Glue::Job")["Properties"]),
        crawler=resolver.resolve(stack, one("AWS::Glue::Crawler")["Properties"]),
        topic_arn=notify["TopicArn"],
        notice_topic_arn=parsed["States"]["NotifySuccess"]["Parameters"]["TopicArn"],
        ruleset=one("AWS::Glue::DataQualityRuleset")["Properties"]["Name"],
    )


@dataclass
class Execution:
    arn: str
    status: str
    states: list[str]
    notices: list[dict[str, str]]
    output: dict[str, Any]
    error: str | None
    cause: str | None


@dataclass
class Lake:
    """moto's account with the pipeline deployed, and what the fakes were asked."""

    deployed: Deployed
    job_outcome: str = "SUCCEEDED"  # or "FAILED", or "RUNNING": the run never ends
    summary: RunResult | None = field(default_factory=lambda: REBUILT)  # None: succeeds, writes none
    dq_statuses: list[str] = field(default_factory=lambda: ["SUCCEEDED"])
    dq_score: float = 1.0
    #: Reads of the result after the first fail (with Glue's InternalServiceException).
    dq_rules_unreadable: bool = False
    #: Starts of an evaluation that fail (with Glue's InternalServiceException) before one succeeds.
    dq_start_failures: int = 0
    job_runs: list[str] = field(default_factory=list)
    job_arguments: list[dict[str, str]] = field(default_factory=list)
    dq_requests: list[dict[str, Any]] = field(default_factory=list)
    retry_delays: list[float] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.glue = boto3.client("glue", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        d = self.deployed
        self.summaries = urlparse(d.job["DefaultArguments"]["--run_summary_path"])
        self.s3.create_bucket(
            Bucket=self.summaries.netloc, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        self.glue.create_job(**d.job)
        self.glue.create_crawler(**d.crawler)
        # one inbox for the alerts and the notices; each message says which topic it came by
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])
        for arn in (d.topic_arn, d.notice_topic_arn):
            topic = sns.create_topic(Name=arn.rsplit(":", 1)[1])["TopicArn"]
            assert topic == arn
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
        self.machine = self.sfn.create_state_machine(
            name=d.machine_name,
            definition=d.definition,
            roleArn=d.machine_role,
        )["stateMachineArn"]

    # --- the fakes, called by moto while the state machine runs --------------------------------
    def job_started(self, run: Any) -> None:
        self.job_runs.append(run.job_run_id)
        self.job_arguments.append(run.arguments or {})
        if self.job_outcome == "RUNNING":
            run._transitions = [("STARTING", "RUNNING")]
        elif self.job_outcome != "SUCCEEDED":
            run._transitions = [("STARTING", "RUNNING"), ("RUNNING", self.job_outcome)]
        elif self.summary is not None:  # the job's last act, at the path it is given
            key = summary_key(self.summaries.path.lstrip("/"), run.job_run_id)
            body = json.dumps(run_summary(run.job_run_id, "orders", self.summary))
            self.s3.put_object(Bucket=self.summaries.netloc, Key=key, Body=body.encode())

    def dq(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        self.dq_requests.append({"action": action, **params})
        if action == "start" and self.dq_start_failures:
            self.dq_start_failures -= 1
            raise GlueClientError("InternalServiceException", "the answer to a start was lost")
        if action == "start":
            return {"RunId": "dqrun-1"}
        if action == "run":
            status = self.dq_statuses.pop(0) if len(self.dq_statuses) > 1 else self.dq_statuses[0]
            return {"RunId": params["RunId"], "Status": status, "ResultIds": ["dqresult-1"]}
        reads = sum(r["action"] == "result" for r in self.dq_requests)
        if reads > 1 and self.dq_rules_unreadable:
            raise GlueClientError("InternalServiceException", "the result could not be read")
        return {
            "ResultId": params["ResultId"],
            "Score": self.dq_score,
            "RuleResults": rule_results(self.dq_score),
        }

    # --- running it ----------------------------------------------------------------------------
    def run(self, timeout_s: float = 30, **execution_input: Any) -> Execution:
        arn = self.sfn.start_execution(
            stateMachineArn=self.machine, name=uuid.uuid4().hex, input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout_s
        while (described := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.05)
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        notices = []
        for message in self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            envelope = json.loads(message["Body"])
            topic = "notices" if envelope["TopicArn"] == self.deployed.notice_topic_arn else "alerts"
            notices.append({"topic": topic, "subject": envelope["Subject"], "message": envelope["Message"]})
        return Execution(
            arn=arn,
            status=described["status"],
            states=states,
            notices=notices,
            output=json.loads(described.get("output") or "{}"),
            error=described.get("error"),
            cause=described.get("cause"),
        )


def _streams_as_text(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
    """As Step Functions does for ``aws-sdk`` tasks: a streamed member (S3's ``Body``) becomes text."""
    if isinstance(response, dict):
        for key, value in list(response.items()):
            if hasattr(value, "read"):
                response[key] = value.read().decode()


@pytest.fixture
def lake(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        state_manager.set_transition(model_name="glue::job_run", transition={"progression": "immediate"})
        lake = Lake(deployed)
        # interpreter gaps (module docstring)
        patterns = {*glue_service._SUPPORTED_INTEGRATION_PATTERNS, ResourceCondition.WaitForTaskToken}
        monkeypatch.setattr(glue_service, "_SUPPORTED_INTEGRATION_PATTERNS", patterns)
        monkeypatch.setattr(aws_sdk.StateTaskServiceAwsSdk, "_normalise_response", _streams_as_text)
        monkeypatch.setitem(aws_sdk._SERVICE_ERROR_NAMES, "glue", "Glue")
        monkeypatch.setitem(aws_sdk._SERVICE_ERROR_NAMES, "s3", "S3")
        # time: recorded, not slept
        monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=lake.retry_delays.append))
        monkeypatch.setattr(
            WaitFunction, "_wait_interval", lambda _self, env, wait_seconds: lake.waits.append(wait_seconds)
        )
        # the job's summary, and Glue Data Quality
        start_job_run = glue_models.FakeJob.start_job_run

        def started(job: Any, *args: Any, **kwargs: Any) -> str:
            run_id: str = start_job_run(job, *args, **kwargs)
            lake.job_started(job.job_runs[-1])
            return run_id

        monkeypatch.setattr(glue_models.FakeJob, "start_job_run", started)
        for action, method in {
            "start": "start_data_quality_ruleset_evaluation_run",
            "run": "get_data_quality_ruleset_evaluation_run",
            "result": "get_data_quality_result",
        }.items():

            def handler(response: Any, action: str = action) -> Any:
                return ActionResult(lake.dq(action, dict(response.parameters)))

            monkeypatch.setattr(GlueResponse, method, handler, raising=False)
        yield lake
    state_manager.unset_transition("glue::job_run")


def rule_results(score: float, total: int = 20) -> list[dict[str, Any]]:
    """Glue's ``RuleResults`` for ``score`` (rules passed over rules): the first rules fail, the
    second of them with an ERROR (a rule Glue could not evaluate), the others PASS."""
    not_passed = round((1 - score) * total)
    results = ["FAIL" if n != 1 else "ERROR" for n in range(not_passed)] + ["PASS"] * (total - not_passed)
    return [
        {"Name": f"Rule_{n + 1}", "Description": f'ColumnValues "c{n + 1}" >= 0', "Result": result}
        for n, result in enumerate(results)
    ]


def _retry(definition: str, state: str) -> dict[str, Any]:
    (retrier,) = json.loads(definition)["States"][state]["Retry"]
    return dict(retrier)


def _assert_backoff(delays: list[float], retrier: dict[str, Any]) -> None:
    """Full jitter: the n-th delay is anywhere from 0 to the capped exponential interval."""
    assert len(delays) == retrier["MaxAttempts"]
    for n, delay in enumerate(delays):
        ceiling = min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n, retrier["MaxDelaySeconds"])
        assert 0 <= delay <= ceiling, (n, delay, ceiling)


def test_a_run_that_rebuilt_days_crawls_checks_quality_and_reports_its_counts(lake: Lake) -> None:
    lake.dq_statuses = ["RUNNING", "SUCCEEDED"]  # one more poll of the evaluation

    run = lake.run()

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "ReadRunSummary", "AnyDayRebuilt?", "StartCrawler", "AnyRowsWritten?", "StartDataQuality",
        "WaitForDataQuality", "GetDataQualityRun", "DataQualityDone?",
        "WaitForDataQuality", "GetDataQualityRun", "DataQualityDone?",
        "GetDataQualityResult", "DataQualityPassed?", "NotifySuccess", "Done",
    ]  # fmt: skip
    # the transitions `make cost` prices for such a run, done at the first poll (one poll fewer)
    assert len(run.states) - 3 == PIPELINE_TRANSITIONS
    assert lake.waits == [60, 60]
    (job_run,) = lake.job_runs
    assert run.output["job"]["JobRunId"] == job_run
    assert run.output["run"]["summary"] == run_summary(job_run, "orders", REBUILT)
    crawler = lake.glue.get_crawler(Name=lake.deployed.crawler["Name"])["Crawler"]
    assert crawler["State"] == "RUNNING"
    start = lake.dq_requests[0]
    assert start["action"] == "start"
    assert start["RulesetNames"] == [lake.deployed.ruleset]
    # stopped after the job's timeout (the dataset file's 60 minutes), not the API's 48 hours
    assert start["Timeout"] == 60
    # on the 5 workers `make cost` prices
    assert start["NumberOfWorkers"] == 5
    # the evaluation reads the days the run wrote, not the whole table
    assert start["DataSource"] == {
        "GlueTable": {
            "DatabaseName": "lake_sbx_curated",
            "TableName": "orders",
            "AdditionalOptions": {
                "pushDownPredicate": "(year='2024' AND month='05' AND day IN ('01', '02'))"
            },
        }
    }
    (notice,) = run.notices
    # news, not an alert: the notices topic, apart from whoever is on call
    assert (notice["topic"], notice["subject"]) == ("notices", "Data lake pipeline succeeded: orders")
    assert notice["message"] == (
        "orders: 2 day(s) rebuilt with 1150 rows (4 quarantined, 50 duplicates dropped), "
        f"data-quality score 1.0 on the days written, job run {job_run}"
    )


def test_a_retried_start_of_the_evaluation_carries_the_executions_token(lake: Lake) -> None:
    # GIVEN Glue answers the first start of the evaluation with a service error (it may have
    # started the run all the same)
    lake.dq_start_failures = 1

    run = lake.run()

    # THEN the start is retried, with the same idempotency token, the execution's own: Glue
    # returns the run a start it had carried out created, rather than starting a second one
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    first, second = [r for r in lake.dq_requests if r["action"] == "start"]
    assert first["ClientToken"] == second["ClientToken"] == hashlib.sha256(run.arn.encode()).hexdigest()
    assert run.states.count("StartDataQuality") == 1 and len(lake.retry_delays) == 1


def test_a_run_started_with_days_to_rebuild_passes_them_to_the_job(lake: Lake) -> None:
    # an operator's start after a rule changed; the schedule's start has only a trigger
    requested = lake.run(rebuild="2024-05-01..2024-05-31")
    scheduled = lake.run(trigger="schedule")

    assert requested.status == scheduled.status == "SUCCEEDED", (requested.cause, scheduled.cause)
    assert requested.states[:2] == ["RebuildRequested?", "RunJob"]
    assert scheduled.states[:3] == ["RebuildRequested?", "OnlyNewData", "RunJob"]
    rebuilt = [a.get("--rebuild_days") for a in lake.job_arguments]
    assert rebuilt == ["2024-05-01..2024-05-31", "none"]


def test_a_run_that_left_no_curated_row_crawls_but_evaluates_nothing(lake: Lake) -> None:
    lake.summary = EMPTIED

    run = lake.run()

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "ReadRunSummary", "AnyDayRebuilt?", "StartCrawler", "AnyRowsWritten?",
        "NotifyNoRowsToCheck", "Done",
    ]  # fmt: skip
    assert lake.dq_requests == []
    (job_run,) = lake.job_runs
    (notice,) = run.notices
    assert notice["topic"] == "notices"
    assert notice["message"] == (
        "orders: 1 day(s) rebuilt with 0 rows (3 quarantined, 0 duplicates dropped), "
        f"no curated rows to check, job run {job_run}"
    )


def test_a_run_with_nothing_new_stops_after_the_job_silently(lake: Lake) -> None:
    lake.summary = IDLE

    run = lake.run()

    assert run.status == "SUCCEEDED"
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "ReadRunSummary", "AnyDayRebuilt?", "NothingNew"
    ]  # fmt: skip
    assert len(run.states) == PIPELINE_TRANSITIONS_SKIPPING  # what `make cost` prices an idle hour
    assert run.output["run"]["summary"]["partitions_rebuilt"] == 0
    assert lake.glue.get_crawler(Name=lake.deployed.crawler["Name"])["Crawler"]["State"] == "READY"
    assert lake.dq_requests == []
    assert run.notices == []


def test_a_failing_job_is_run_once_more_then_alerts_with_step_and_execution(lake: Lake) -> None:
    lake.job_outcome = "FAILED"

    run = lake.run()

    assert run.status == "FAILED"
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "JobRunFailed?", "WaitBeforeRunningAgain", "RunJobAgain",
        "RunJobFailed", "NotifyFailure", "PipelineFailed",
    ]  # fmt: skip
    # one more run, two minutes later; a run that failed is not retried as a failed call would be
    assert len(lake.job_runs) == 2
    assert lake.waits == [120]
    assert lake.retry_delays == []
    assert run.error == "PipelineFailed"
    assert run.cause is not None and run.cause.startswith("States.TaskFailed: ")
    (notice,) = run.notices
    assert (notice["topic"], notice["subject"]) == ("alerts", "Data lake pipeline failed: orders")
    assert notice["message"].startswith(
        "Data lake pipeline orders failed at step RunJob: States.TaskFailed - "
    )
    assert notice["message"].endswith(f"#/v2/executions/details/{run.arn}")
    assert f"region={REGION}#" in notice["message"]
    assert lake.dq_requests == []


def test_a_job_run_that_timed_out_alerts_at_once_without_running_again(lake: Lake) -> None:
    lake.job_outcome = "TIMEOUT"

    run = lake.run()

    # another run would most likely time out too, at the cost of a whole timeout
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "JobRunFailed?", "RunJobFailed", "NotifyFailure", "PipelineFailed"
    ]  # fmt: skip
    assert len(lake.job_runs) == 1
    assert lake.waits == lake.retry_delays == []
    (notice,) = run.notices
    assert notice["message"].startswith(
        "Data lake pipeline orders failed at step RunJob: States.TaskFailed - "
    )
    assert '"JobRunState": "TIMEOUT"' in notice["message"]


def _hold_a_job_run(lake: Lake) -> None:
    """A run of the job that is still going, as a backfill longer than the schedule's period is."""
    lake.job_outcome = "RUNNING"
    lake.glue.start_job_run(JobName=lake.deployed.job["Name"])
    lake.job_outcome = "SUCCEEDED"


def test_a_scheduled_run_while_the_previous_one_still_runs_ends_without_an_alert(lake: Lake) -> None:
    _hold_a_job_run(lake)

    run = lake.run(trigger="schedule")

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [
        "RebuildRequested?", "OnlyNewData", "RunJob", "OnlyNewDataRequested?", "PreviousRunStillRunning"
    ]  # fmt: skip
    assert run.output["error"]["Error"] == "Glue.ConcurrentRunsExceededException"
    assert len(lake.job_runs) == 1  # the held run only: Glue refused every start, retries included
    _assert_backoff(lake.retry_delays, _retry(lake.deployed.definition, "RunJob"))
    assert run.notices == []


def test_a_rebuild_refused_because_a_run_is_still_going_alerts(lake: Lake) -> None:
    _hold_a_job_run(lake)

    run = lake.run(rebuild="2024-05-01")

    assert run.status == "FAILED"
    assert run.states[-4:] == ["OnlyNewDataRequested?", "RunJobFailed", "NotifyFailure", "PipelineFailed"]
    (notice,) = run.notices
    assert "failed at step RunJob: Glue.ConcurrentRunsExceededException" in notice["message"]


def test_a_job_that_left_no_summary_alerts_at_the_read_instead_of_guessing(lake: Lake) -> None:
    lake.summary = None

    run = lake.run()

    assert run.status == "FAILED"
    assert run.states == [
        "RebuildRequested?",
        "OnlyNewData",
        "RunJob",
        "ReadRunSummary",
        "ReadRunSummaryFailed",
        "NotifyFailure",
        "PipelineFailed",
    ]
    _assert_backoff(lake.retry_delays, _retry(lake.deployed.definition, "ReadRunSummary"))
    assert run.error == "PipelineFailed"
    assert run.cause is not None and run.cause.startswith(
        "S3.NoSuchKeyException: The specified key does not exist."
    )
    (notice,) = run.notices
    assert "failed at step ReadRunSummary: S3.NoSuchKeyException" in notice["message"]


@pytest.mark.parametrize(
    ("score", "not_passed"),
    [
        (
            0.8,
            '["ColumnValues \\"c1\\" >= 0","ColumnValues \\"c2\\" >= 0","ColumnValues \\"c3\\" >= 0",'
            '"ColumnValues \\"c4\\" >= 0"]',
        ),
        (0.95, '["ColumnValues \\"c1\\" >= 0"]'),  # one rule failed of twenty
    ],
)
def test_a_score_below_one_alerts_naming_the_rules_not_passed_and_fails_the_execution(
    lake: Lake, score: float, not_passed: str
) -> None:
    lake.dq_score = score

    run = lake.run()

    assert run.status == "FAILED"
    assert run.states[-6:] == [
        "DataQualityPassed?", "ReadRulesNotPassed", "DataQualityFailed", "DataQualityStep", "NotifyFailure",
        "PipelineFailed",
    ]  # fmt: skip
    # the rules that failed or could not be evaluated (ERROR), as DQDL, and the evaluation's result
    cause = f"Ruleset score {score} is below 1.0, rules not passed: {not_passed} (result dqresult-1)"
    assert (run.error, run.cause) == ("PipelineFailed", f"DataQualityFailed: {cause}")
    (notice,) = run.notices
    assert f"failed at step DataQuality: DataQualityFailed - {cause}" in notice["message"]


def test_a_score_below_one_alerts_with_the_score_when_the_rules_cannot_be_read(lake: Lake) -> None:
    lake.dq_score = 0.8
    lake.dq_rules_unreadable = True

    run = lake.run()

    assert run.states[-6:] == [
        "ReadRulesNotPassed", "RulesNotRead", "DataQualityFailed", "DataQualityStep", "NotifyFailure",
        "PipelineFailed",
    ]  # fmt: skip
    _assert_backoff(lake.retry_delays, _retry(lake.deployed.definition, "ReadRulesNotPassed"))
    assert run.cause == (
        "DataQualityFailed: Ruleset score 0.8 is below 1.0, rules not passed: "
        '["(not read: see the result)"] (result dqresult-1)'
    )


@pytest.mark.parametrize(
    "statuses", [["FAILED"], ["TIMEOUT"], ["STOPPING", "STOPPED"]], ids=["failed", "timeout", "stopped"]
)
def test_a_failed_evaluation_run_alerts_with_its_status(lake: Lake, statuses: list[str]) -> None:
    # (a run being stopped is polled again until it has stopped)
    lake.dq_statuses = list(statuses)
    status = statuses[-1]

    run = lake.run()

    assert run.status == "FAILED"
    assert run.states[-5:] == [
        "DataQualityDone?", "DataQualityRunFailed", "DataQualityRunStep", "NotifyFailure", "PipelineFailed",
    ]  # fmt: skip
    # the alert names the evaluation run, whose record gives the reason
    assert (run.error, run.cause) == (
        "PipelineFailed",
        f"DataQualityRunFailed: {status} (evaluation run dqrun-1)",
    )
    (notice,) = run.notices
    assert (
        f"failed at step DataQualityRun: DataQualityRunFailed - {status} (evaluation run dqrun-1)"
        in notice["message"]
    )


def test_a_crawler_still_running_from_before_does_not_stop_the_pipeline(lake: Lake) -> None:
    lake.glue.start_crawler(Name=lake.deployed.crawler["Name"])

    run = lake.run()

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[5:9] == ["StartCrawler", "CrawlerAlreadyRunning", "AnyRowsWritten?", "StartDataQuality"]
    (notice,) = run.notices
    # news, not an alert: the notices topic, apart from whoever is on call
    assert (notice["topic"], notice["subject"]) == ("notices", "Data lake pipeline succeeded: orders")
