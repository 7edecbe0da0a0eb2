"""The states of one dataset's pipeline: run the job, read its summary, crawl, check data quality,
notify; every failure to the alert topic with the step that failed.

    RebuildRequested? -> RunJob -> ReadRunSummary -> AnyDayRebuilt? -> StartCrawler
      -> AnyRowsWritten? -> StartDataQuality
      -> (WaitForDataQuality -> GetDataQualityRun -> DataQualityDone?), until it is done
      -> GetDataQualityResult -> DataQualityPassed? -> NotifySuccess -> Done

:class:`PipelineDefinition` builds the states in the scope it is given (the dataset's
``DatasetPipeline``, whose state ids they keep); the state machine, its role and its policy are
the pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk_constructs.state_machines import execution_token, failure_notice, retry
from cdk_constructs.storage import RUN_SUMMARIES
from datalake.dataset import Dataset
from datalake.quality import EVALUATION_WORKERS

#: Errors of a StartJobRun call (not of the run it starts) worth retrying: throttling (which the
#: optimized integration reports as Glue.AWSGlueException), a service error, the previous run still
#: going, the account's limit of concurrent runs.
GLUE_CALL_ERRORS = (
    "Glue.AWSGlueException",
    "Glue.ConcurrentRunsExceededException",
    "Glue.InternalServiceException",
    "Glue.OperationTimeoutException",
    "Glue.ResourceNumberLimitExceededException",
    "Glue.ThrottlingException",
)
#: A run that ended FAILED is started once more after this wait.
RUN_AGAIN_AFTER = Duration.minutes(2)


@dataclass(frozen=True)
class CatalogTarget:
    """Where the curated rows of a dataset live in S3 and in the catalog."""

    database: str
    table: str
    quarantine_table: str


@dataclass(frozen=True)
class PipelineTargets:
    """What a pipeline's states call: its job, crawler and ruleset, and where they write."""

    dataset: Dataset
    job_name: str
    crawler_name: str
    #: the role data-quality evaluations run as (the job's)
    job_role_arn: str
    ruleset_name: str
    ruleset_arn: str
    catalog: CatalogTarget
    curated_bucket: s3.IBucket


def quality_source(database: str, table: str, scope: str) -> dict[str, object]:
    """The ``GlueTable`` a data-quality evaluation reads after a run: with ``days_written``, the
    days the run wrote (the run summary's ``quality_predicate`` as Glue's ``pushDownPredicate``);
    with ``table``, all of it (``Processing.quality_scope``)."""
    source: dict[str, object] = {"DatabaseName": database, "TableName": table}
    if scope == "days_written":
        predicate = sfn.JsonPath.string_at("$.run.summary.quality_predicate")
        source["AdditionalOptions"] = {"pushDownPredicate": predicate}
    return source


class PipelineDefinition:
    """The states of ``targets.dataset``'s pipeline, built in ``scope``.

    :ivar definition: the start state.
    :ivar summaries_arn: the run summaries the states read (the state machine's role reads them).
    """

    def __init__(
        self, scope: Construct, targets: PipelineTargets, *, alert_topic: sns.ITopic, notice_topic: sns.ITopic
    ) -> None:
        self._scope = scope
        self._targets = targets
        ds = targets.dataset.name
        self._notify_failure = failure_notice(
            scope,
            topic=alert_topic,
            subject=f"Data lake pipeline failed: {ds}",
            summary=f"Data lake pipeline {ds}",
            fail_id="PipelineFailed",
            step_path="$.failedStep",
        )
        run_job, run_again = self._job_runs()
        read_summary = self._read_summary()
        start_crawler, already_running = self._crawler()
        checked, unchecked = self._success_notices(notice_topic)
        start_dq = self._data_quality(checked)
        any_rows = (
            sfn.Choice(scope, "AnyRowsWritten?")
            .when(sfn.Condition.string_equals("$.run.summary.quality_predicate", ""), unchecked)
            .otherwise(start_dq)
        )
        already_running.next(any_rows)
        # Nothing new (no day rebuilt): the catalog and the data-quality score still hold, so the
        # crawler (10-minute billing minimum) and the evaluation (5 DPU) are not started.
        new_data = (
            sfn.Choice(scope, "AnyDayRebuilt?")
            .when(sfn.Condition.number_greater_than("$.run.summary.partitions_rebuilt", 0), start_crawler)
            .otherwise(
                sfn.Succeed(scope, "NothingNew", comment="The job rebuilt no day: nothing to crawl or check")
            )
        )
        start_crawler.next(any_rows)
        run_job.next(read_summary).next(new_data)
        run_again.next(read_summary)
        # Started with {"rebuild": "2024-05-01..2024-05-31"} (after a rule in the dataset file
        # changed), the job rebuilds those days too; a scheduled start has no such field.
        self.definition: sfn.IChainable = (
            sfn.Choice(scope, "RebuildRequested?")
            .when(sfn.Condition.is_present("$.rebuild"), run_job)
            .otherwise(
                sfn.Pass(
                    scope, "OnlyNewData", result=sfn.Result.from_string("none"), result_path="$.rebuild"
                ).next(run_job)
            )
        )

    def _on_failure(self, state: sfn.TaskStateBase, step: str) -> sfn.Pass:
        """Catches every error of ``state``: names ``step`` as the failed one, then notifies."""
        mark = sfn.Pass(
            self._scope, f"{step}Failed", result=sfn.Result.from_string(step), result_path="$.failedStep"
        )
        mark.next(self._notify_failure)
        state.add_catch(mark, errors=["States.ALL"], result_path="$.error")
        return mark

    def _start_job(self, state_id: str) -> tasks.GlueStartJobRun:
        task = tasks.GlueStartJobRun(
            self._scope,
            state_id,
            glue_job_name=self._targets.job_name,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            arguments=sfn.TaskInput.from_object({"--rebuild_days": sfn.JsonPath.string_at("$.rebuild")}),
            # No task timeout: for this task CDK sends it as the run's Timeout, which would
            # override the job's own (the dataset file's timeout_minutes).
            result_selector={"JobRunId.$": "$.Id", "ExecutionTime.$": "$.ExecutionTime"},
            result_path="$.job",
        )
        # Errors of the call itself are retried. A run that ended FAILED or TIMEOUT is not
        # (Step Functions reports both as States.TaskFailed, which in a retrier would match
        # every error): a timed-out run would time out again, at the cost of a whole timeout.
        retry(task, errors=list(GLUE_CALL_ERRORS), max_attempts=2)
        return task

    def _job_runs(self) -> tuple[tasks.GlueStartJobRun, tasks.GlueStartJobRun]:
        """The job's run, and the one started again after a run that ended FAILED."""
        scope = self._scope
        run_job = self._start_job("RunJob")
        run_again = self._start_job("RunJobAgain")
        # The previous run still going (a backfill longer than the schedule's period, or the next
        # scheduled run, started while a failed run waited to run again) is no failure for a run
        # that only looks for new data: that run, or the next, curates it. A start that asked for
        # days to rebuild fails instead, so the request is not dropped unseen.
        busy = sfn.Choice(scope, "OnlyNewDataRequested?")
        for task in (run_job, run_again):
            task.add_catch(busy, errors=["Glue.ConcurrentRunsExceededException"], result_path="$.error")
        job_failed = self._on_failure(run_again, "RunJob")
        busy.when(
            sfn.Condition.string_equals("$.rebuild", "none"),
            sfn.Succeed(scope, "PreviousRunStillRunning", comment="The job's previous run is still running"),
        ).otherwise(job_failed)
        # A run that ended FAILED is started once more, two minutes later: the job is idempotent
        # (it rebuilds whole days, and a failed run recorded nothing). Anything else is reported at
        # once: a run that timed out, or a call that kept failing. The cause of a failed run is its
        # JobRun as JSON, matched as text: a cause in another form is reported, not run again.
        ended = sfn.Choice(scope, "JobRunFailed?")
        run_job.add_catch(ended, errors=["States.ALL"], result_path="$.error")
        # rules are tried in order: a caught error without a cause never reaches the match below
        ended.when(sfn.Condition.not_(sfn.Condition.is_present("$.error.Cause")), job_failed).when(
            sfn.Condition.or_(
                *[
                    sfn.Condition.string_matches("$.error.Cause", f'*"JobRunState":{space}"FAILED"*')
                    for space in ("", " ")
                ]
            ),
            sfn.Wait(scope, "WaitBeforeRunningAgain", time=sfn.WaitTime.duration(RUN_AGAIN_AFTER)).next(
                run_again
            ),
        ).otherwise(job_failed)
        return run_job, run_again

    @property
    def summaries_arn(self) -> str:
        """The run summaries of the dataset: the job's last act is one under its run id."""
        return self._targets.curated_bucket.arn_for_objects(f"{self._summary_prefix}/*")

    @property
    def _summary_prefix(self) -> str:
        return f"{RUN_SUMMARIES}/{self._targets.dataset.name}"

    def _read_summary(self) -> tasks.CallAwsService:
        """The run's summary (how many days it rebuilt, the data-quality predicate, the counts)."""
        read_summary = tasks.CallAwsService(
            self._scope,
            "ReadRunSummary",
            service="s3",
            action="getObject",
            parameters={
                "Bucket": self._targets.curated_bucket.bucket_name,
                "Key": sfn.JsonPath.format(
                    f"{self._summary_prefix}/{{}}.json", sfn.JsonPath.string_at("$.job.JobRunId")
                ),
            },
            iam_resources=[self.summaries_arn],
            result_selector={"summary.$": "States.StringToJson($.Body)"},
            result_path="$.run",
        )
        retry(read_summary)
        self._on_failure(read_summary, "ReadRunSummary")
        return read_summary

    def _crawler(self) -> tuple[tasks.GlueStartCrawlerRun, sfn.Pass]:
        """The crawler's start, and the state a start finding it running goes on from."""
        start_crawler = tasks.GlueStartCrawlerRun(
            self._scope,
            "StartCrawler",
            crawler_name=self._targets.crawler_name,
            result_path=sfn.JsonPath.DISCARD,
        )
        already_running = sfn.Pass(self._scope, "CrawlerAlreadyRunning")
        start_crawler.add_catch(
            already_running, errors=["Glue.CrawlerRunningException"], result_path=sfn.JsonPath.DISCARD
        )
        retry(start_crawler, errors=["Glue.ThrottlingException", "Glue.OperationTimeoutException"])
        self._on_failure(start_crawler, "StartCrawler")
        return start_crawler, already_running

    def _read_quality(
        self,
        state_id: str,
        action: str,
        parameters: dict[str, str],
        result_path: str,
        selector: dict[str, str] | None = None,
    ) -> tasks.CallAwsService:
        """A read of the evaluation (its run or its result), retried; its catch is the caller's."""
        task = tasks.CallAwsService(
            self._scope,
            state_id,
            service="glue",
            action=action,
            parameters=parameters,
            iam_resources=[self._targets.ruleset_arn],
            result_selector=selector,
            result_path=result_path,
        )
        retry(task)
        return task

    def _data_quality(self, checked: tasks.SnsPublish) -> tasks.CallAwsService:
        """The evaluation's start, its polls and its verdict: a passed one goes on to ``checked``."""
        scope, t = self._scope, self._targets
        start_dq = tasks.CallAwsService(
            scope,
            "StartDataQuality",
            service="glue",
            action="startDataQualityRulesetEvaluationRun",
            parameters={
                "DataSource": {
                    "GlueTable": quality_source(
                        t.catalog.database, t.catalog.table, t.dataset.processing.quality_scope
                    )
                },
                "Role": t.job_role_arn,
                "RulesetNames": [t.ruleset_name],
                # the job's timeout, not the API's default of 48 hours (of 5 DPU): the run ends
                # TIMEOUT, which the pipeline reports, before the pipeline itself times out
                "Timeout": t.dataset.processing.timeout_minutes,
                "NumberOfWorkers": EVALUATION_WORKERS,
                "AdditionalRunOptions": {
                    # the dashboard's metrics, and (Glue's alerts page) what lets the evaluation
                    # publish the EventBridge event the failure rule waits for
                    "CloudWatchMetricsEnabled": True,
                    # an optional column's rules read "(bound) OR (ColumnValues c = NULL)", which
                    # holds row by row only: by default Glue evaluates each side over the whole
                    # column and fails a day holding both NULLs and values (DQDL reference)
                    "CompositeRuleEvaluationMethod": "ROW",
                },
                # a retried start that Glue had carried out returns that run, not a second one
                "ClientToken": execution_token(),
            },
            iam_resources=[t.ruleset_arn],
            result_selector={"RunId.$": "$.RunId"},
            result_path="$.dq",
        )
        retry(start_dq)
        self._on_failure(start_dq, "StartDataQuality")
        wait = sfn.Wait(scope, "WaitForDataQuality", time=sfn.WaitTime.duration(Duration.seconds(60)))
        get_run = self._read_quality(
            "GetDataQualityRun", "getDataQualityRulesetEvaluationRun", {"RunId.$": "$.dq.RunId"}, "$.dqRun"
        )
        self._on_failure(get_run, "GetDataQualityRun")
        get_result = self._read_quality(
            "GetDataQualityResult",
            "getDataQualityResult",
            {"ResultId.$": "States.ArrayGetItem($.dqRun.ResultIds, 0)"},
            "$.dqResult",
            {"Score.$": "$.Score", "ResultId.$": "$.ResultId"},
        )
        self._on_failure(get_result, "GetDataQualityResult")
        dq_failed = sfn.Pass(
            scope,
            "DataQualityFailed",
            parameters={
                "Error": "DataQualityFailed",
                # the rules, so the alert says what to look at; the result id finds each rule's
                # evaluation message: aws glue get-data-quality-result
                "Cause.$": "States.Format('Ruleset score {} is below 1.0, rules not passed: {} (result {})', "
                "$.dqResult.Score, States.JsonToString($.dqRules.NotPassed), $.dqResult.ResultId)",
            },
            result_path="$.error",
        )
        # Read again on this branch only, where at least one rule did not pass: the filter is an
        # indefinite JSONPath (the full syntax, which ResultSelector takes), so it gives the
        # DQDL text of every rule whose Result is FAIL or ERROR, in the ruleset's order.
        read_rules = self._read_quality(
            "ReadRulesNotPassed",
            "getDataQualityResult",
            {"ResultId.$": "$.dqResult.ResultId"},
            "$.dqRules",
            {"NotPassed.$": "$.RuleResults[?(@.Result != 'PASS')].Description"},
        )
        # the score alone still alerts when the rules cannot be read
        read_rules.add_catch(
            sfn.Pass(
                scope,
                "RulesNotRead",
                result=sfn.Result.from_object({"NotPassed": ["(not read: see the result)"]}),
                result_path="$.dqRules",
            ).next(dq_failed),
            errors=["States.ALL"],
            result_path="$.dqRulesError",
        )
        read_rules.next(dq_failed)
        dq_failed.next(
            sfn.Pass(
                scope,
                "DataQualityStep",
                result=sfn.Result.from_string("DataQuality"),
                result_path="$.failedStep",
            )
        ).next(self._notify_failure)
        dq_status = (
            sfn.Choice(scope, "DataQualityDone?")
            .when(sfn.Condition.string_equals("$.dqRun.Status", "SUCCEEDED"), get_result)
            .when(
                sfn.Condition.or_(
                    sfn.Condition.string_equals("$.dqRun.Status", "STARTING"),
                    sfn.Condition.string_equals("$.dqRun.Status", "RUNNING"),
                    sfn.Condition.string_equals("$.dqRun.Status", "STOPPING"),
                ),
                wait,
            )
            .otherwise(
                sfn.Pass(
                    scope,
                    "DataQualityRunFailed",
                    parameters={
                        "Error": "DataQualityRunFailed",
                        # the run id finds its ErrorString (optional in the response: not read here)
                        "Cause.$": "States.Format('{} (evaluation run {})', $.dqRun.Status, $.dqRun.RunId)",
                    },
                    result_path="$.error",
                )
                .next(
                    sfn.Pass(
                        scope,
                        "DataQualityRunStep",
                        result=sfn.Result.from_string("DataQualityRun"),
                        result_path="$.failedStep",
                    )
                )
                .next(self._notify_failure)
            )
        )
        score_ok = (
            sfn.Choice(scope, "DataQualityPassed?")
            .when(sfn.Condition.number_greater_than_equals("$.dqResult.Score", 1), checked)
            .otherwise(read_rules)
        )
        get_result.next(score_ok)
        wait.next(get_run).next(dq_status)
        start_dq.next(wait)
        return start_dq

    def _success_notices(self, notice_topic: sns.ITopic) -> tuple[tasks.SnsPublish, tasks.SnsPublish]:
        """The notices of a run whose days were checked, and of a run that left every rebuilt day
        empty (its rows quarantined, or its keys moved to days outside the run): there is nothing
        to evaluate, and an evaluation of no rows has no score."""
        scope, ds = self._scope, self._targets.dataset.name
        counts = [
            sfn.JsonPath.string_at(f"States.JsonToString($.run.summary.{n})")
            for n in ("partitions_rebuilt", "rows_written", "rows_quarantined", "duplicates_dropped")
        ]
        done = sfn.Succeed(scope, "Done")

        def notify_success(state_id: str, quality: str, *quality_args: str) -> tasks.SnsPublish:
            notice = tasks.SnsPublish(
                scope,
                state_id,
                topic=notice_topic,
                subject=f"Data lake pipeline succeeded: {ds}",
                message=sfn.TaskInput.from_text(
                    sfn.JsonPath.format(
                        f"{ds}: {{}} day(s) rebuilt with {{}} rows ({{}} quarantined, {{}} duplicates "
                        f"dropped), {quality}, job run {{}}",
                        *counts,
                        *quality_args,
                        sfn.JsonPath.string_at("$.job.JobRunId"),
                    )
                ),
                result_path=sfn.JsonPath.DISCARD,
            )
            retry(notice)
            self._on_failure(notice, state_id)
            notice.next(done)
            return notice

        checked = notify_success(
            "NotifySuccess",
            "data-quality score {} on the days written",
            sfn.JsonPath.string_at("States.JsonToString($.dqResult.Score)"),
        )
        unchecked = notify_success("NotifyNoRowsToCheck", "no curated rows to check")
        return checked, unchecked
