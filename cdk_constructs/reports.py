"""A scheduled Athena report: UNLOAD a shipped query's result to the analytics zone as Parquet."""

from __future__ import annotations

import re

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk_constructs.alerts import alarm_without
from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, wildcard_findings
from cdk_constructs.state_machines import (
    execution_alarms,
    execution_token,
    failure_notice,
    logged_state_machine,
    retry,
    schedule_state_machine,
)
from datalake.dataset import schedule_problem
from datalake.sql import SqlFile, code

REPORTS_PREFIX = "reports"
#: Put into a run's folder once its UNLOAD succeeded, holding the query's id. Athena does not
#: delete what a failed UNLOAD wrote, so a folder without it is no report: readers skip it.
DONE_MARKER = "_SUCCESS"


def unload_statement(query: SqlFile, location: str) -> str:
    """``UNLOAD (<query>) TO '<location>{}/'`` in Parquet; ``{}`` takes the execution name.

    UNLOAD refuses a non-empty target, so every run writes under its own ``run=<execution>/``.
    """
    body = code(query.text).strip()
    if "{" in body or "}" in body:
        raise ValueError(f"{query.path}: braces would be read as Step Functions format placeholders")
    body = re.sub(r"\s+", " ", body)
    return f"UNLOAD ({body}) TO '{location}run={{}}/' WITH (format = 'PARQUET', compression = 'SNAPPY')"


class ScheduledReport(Construct):
    """Runs ``query`` in ``workgroup`` on a schedule and unloads the result to ``bucket``.

    Step Functions' Athena integration waits for the query (``.sync``). A start refused by Athena
    (throttled, or a service error) is retried with backoff and jitter, with the execution's
    idempotency token: a start Athena had in fact taken returns its query instead of starting a
    second UNLOAD into the same ``run=`` folder. A query that failed or outlasted the task's
    timeout is not run again (a second UNLOAD refuses the folder the first one wrote to, and a
    second half hour would outlast the execution's hour): a failure publishes the report, the
    error and the execution to the alert topic, as the pipelines do.

    Each run writes under ``run=<execution name>/`` and, once its UNLOAD succeeded, puts
    :data:`DONE_MARKER` there: Athena leaves the files of a failed UNLOAD in place, so a reader
    takes only the folders that hold the marker.

    No successful run for ``stale_after_hours`` alarms too, which catches a schedule disabled or
    deleted by hand. 49 suits the daily default: two days and the hour a run may take, so one
    failed run, which alarms on its own, does not also; give another with another ``schedule``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        query: SqlFile,
        database: str,
        workgroup: str,
        bucket: s3.IBucket,
        bucket_key: kms.IKey,
        results_bucket: s3.IBucket,
        tables: list[str],
        alert_topic: sns.ITopic,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        schedule_group: str,
        schedule: str = "cron(0 6 * * ? *)",
        stale_after_hours: int = 49,
    ) -> None:
        super().__init__(scope, construct_id)
        if problem := schedule_problem(schedule):
            raise ValueError(f"report {query.name}: schedule {problem}")
        stack = Stack.of(self)
        prefix = f"{REPORTS_PREFIX}/{query.name}/"
        self.location = f"s3://{bucket.bucket_name}/{prefix}"
        self.statement = unload_statement(query, self.location)
        unload = tasks.AthenaStartQueryExecution(
            self,
            "Unload",
            query_string=sfn.JsonPath.format(self.statement, sfn.JsonPath.execution_name),
            query_execution_context=tasks.QueryExecutionContext(database_name=database),
            work_group=workgroup,
            client_request_token=execution_token(),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            task_timeout=sfn.Timeout.duration(Duration.minutes(30)),
            result_selector={"QueryExecutionId.$": "$.QueryExecution.QueryExecutionId"},
            result_path="$.query",
        )
        retry(
            unload,
            errors=["Athena.TooManyRequestsException", "Athena.InternalServerException"],
        )
        notify = failure_notice(
            self,
            topic=alert_topic,
            subject=f"Data lake report failed: {query.name}",
            summary=f"Report {query.name}",
            fail_id="ReportFailed",
        )
        unload.add_catch(notify, errors=["States.ALL"], result_path="$.error")
        mark_done = tasks.CallAwsService(
            self,
            "MarkRunComplete",
            service="s3",
            action="putObject",
            parameters={
                "Bucket": bucket.bucket_name,
                "Key": sfn.JsonPath.format(f"{prefix}run={{}}/{DONE_MARKER}", sfn.JsonPath.execution_name),
                "Body": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.query")),
                "ContentType": "application/json",
            },
            iam_resources=[bucket.arn_for_objects(f"{prefix}*")],
            result_path=sfn.JsonPath.DISCARD,
        )
        retry(mark_done)
        mark_done.add_catch(notify, errors=["States.ALL"], result_path="$.error")
        definition = unload.next(mark_done).next(sfn.Succeed(self, "Done"))

        glue_arns = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=database),
            *(
                stack.format_arn(service="glue", resource="table", resource_name=f"{database}/{t}")
                for t in tables
            ),
        ]
        machine = logged_state_machine(
            self,
            ids="",
            name=f"{name}-report",
            description=f"Report {query.name}: runs its UNLOAD in {workgroup}, publishes failures",
            definition=definition,
            timeout=Duration.hours(1),
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "athena:StartQueryExecution",
                        "athena:GetQueryExecution",
                        "athena:StopQueryExecution",
                    ],
                    resources=[
                        stack.format_arn(service="athena", resource="workgroup", resource_name=workgroup)
                    ],
                ),
                iam.PolicyStatement(
                    actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"], resources=glue_arns
                ),
                iam.PolicyStatement(actions=["lakeformation:GetDataAccess"], resources=["*"]),
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                    resources=[
                        bucket.arn_for_objects(f"{prefix}*"),
                        results_bucket.arn_for_objects(f"{workgroup}/*"),
                    ],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[bucket.bucket_arn, results_bucket.bucket_arn],
                ),
                key_use_via("s3", [bucket_key], ["kms:GenerateDataKey", "kms:Decrypt"]),
            ],
            alert_topic=alert_topic,
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.state_machine = machine.state_machine
        self.role = machine.role
        # A failure the task catches is published by NotifyFailure; these take the rest.
        self.alarms = [
            *execution_alarms(self, self.state_machine, ids="", subject=f"report {query.name}: an execution"),
            alarm_without(
                self,
                "StaleAlarm",
                self.state_machine.metric_succeeded(),
                hours=stale_after_hours,
                description=f"report {query.name}: no run has succeeded for {stale_after_hours} hours: look "
                "for a disabled or deleted schedule, dropped starts or failing runs (runbook)",
            ),
        ]
        policy = machine.policy
        acknowledge(
            policy,
            "The report writes generated object keys under its own reports/ and workgroup prefixes; "
            "vended log delivery, X-Ray and lakeformation:GetDataAccess support no resource-level "
            "permissions.",
            *wildcard_findings(policy),
        )
        # Not "Schedule": a new id moves the schedule into its group (DatasetPipeline says why).
        self.schedule: scheduler.CfnSchedule = schedule_state_machine(
            self,
            "GroupedSchedule",
            name=f"{name}-report",
            state_machine=self.state_machine,
            expression=schedule,
            what=f"the {query.name} report",
            group=schedule_group,
        )
