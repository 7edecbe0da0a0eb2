"""Template assertions for the batch path: job, crawler, data quality, state machine, schedule."""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from cfn_resolve import ACCOUNT, REGION
from constructs import Construct
from lake_app import Synth, actions, joined_json, policy_statements, synthesize
from moto.events.utils import EventTemplateParser

from cdk_constructs.alerts import alarm_above, alarm_arn
from cdk_constructs.pipeline_definition import GLUE_CALL_ERRORS, CatalogTarget, quality_source
from cdk_constructs.processing import (
    GLUE_JOB_DIR,
    GLUE_VERSION,
    DatasetPipeline,
    JobScripts,
    pipeline_timeout_minutes,
    stale_after_hours,
)
from cdk_constructs.storage import RUN_SUMMARIES, SPARK_UI_LOGS
from datalake.dataset import DATASETS_DIR, load_dataset, parse_dataset, start_pipeline_command
from datalake.local_run import duckdb_over, evaluate_quality
from datalake.quality import dqdl, rules
from stacks.observability import ALARMS_PER_WIDGET, alarm_status_widgets

ORDERS = load_dataset(DATASETS_DIR / "orders.json")
EVENTS = Path(__file__).resolve().parent / "events"


@pytest.fixture(scope="module")
def sandbox() -> Synth:
    return synthesize("sandbox")


@pytest.fixture(scope="module")
def template(sandbox: Synth) -> Template:
    return sandbox.template(sandbox.lake.processing)


def _one(template: Template, type_: str) -> dict[str, Any]:
    resources = template.find_resources(type_)
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))["Properties"]


def _definition(template: Template) -> dict[str, Any]:
    definition: dict[str, Any] = joined_json(
        _one(template, "AWS::StepFunctions::StateMachine")["DefinitionString"]
    )
    return definition


def test_job_runs_on_glue_51_with_arguments_from_the_dataset_file(template: Template) -> None:
    job = _one(template, "AWS::Glue::Job")
    assert GLUE_VERSION == "5.1"
    assert job["GlueVersion"] == "5.1"
    assert job["Command"]["Name"] == "glueetl"
    assert job["MaxRetries"] == 0
    assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    args = job["DefaultArguments"]
    assert json.loads(args["--dataset_spec"]) == ORDERS.to_spec()
    assert args["--target_file_size_mib"] == "128"
    assert args["--key_lookback_days"] == "all"  # the dataset file leaves it out: the whole table
    assert args["--curated_table"] == "orders"
    assert args["--quarantine_table"] == "orders_quarantine"
    assert args["--curated_database"] == "lake_sbx_curated"
    # the job keeps its own manifest; Glue bookmarks only track GlueContext reads
    assert args["--job-bookmark-option"] == "job-bookmark-disable"
    # the dataset file's workers are a maximum: small increments run on fewer
    assert args["--enable-auto-scaling"] == "true"
    # Spark's metrics (the dashboard's failed tasks), Glue's observability metrics (error
    # classes, skew, worker utilization) and the driver's log as the run goes
    assert args["--enable-metrics"] == args["--enable-observability-metrics"] == "true"
    assert args["--enable-continuous-cloudwatch-log"] == "true"
    extra = args["--extra-py-files"]["Fn::Sub"]  # the transforms.py asset, shipped as is
    assert extra.startswith("s3://") and extra.endswith(".py")


@functools.cache
def _standalone(retention_days: int | None = None, **processing: Any) -> Template:
    """The pipeline of orders alone in a stack, with ``processing`` settings (and its retention)
    changed."""
    dataset = dataclasses.replace(
        ORDERS,
        processing=dataclasses.replace(ORDERS.processing, **processing),
        governance=dataclasses.replace(ORDERS.governance, retention_days=retention_days),
    )
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Test")
    glue_role = iam.Role(stack, "Job", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"))
    DatasetPipeline(
        stack,
        "Orders",
        dataset=dataset,
        name="t-orders",
        scripts=JobScripts.create(stack),
        raw_bucket=s3.Bucket(stack, "Raw"),
        raw_key=kms.Key(stack, "RawKey"),
        curated_bucket=s3.Bucket(stack, "Curated"),
        curated_key=kms.Key(stack, "CuratedKey"),
        logs_key=kms.Key(stack, "LogsKey"),
        catalog=CatalogTarget(database="d", table="orders", quarantine_table="orders_quarantine"),
        security_configuration="t-lake",
        alert_topic=sns.Topic(stack, "Alerts"),
        log_retention=logs.RetentionDays.ONE_MONTH,
        job_role=glue_role,
        crawler_role=iam.Role(stack, "Crawler", assumed_by=iam.ServicePrincipal("glue.amazonaws.com")),
        schedule_group="default",
    )
    return Template.from_stack(stack)


def test_a_retention_lets_the_job_remove_raw_day_folders_of_its_dataset_and_nothing_else() -> None:
    def raw_deletes(template: Template) -> list[Any]:
        return [
            s["Resource"]
            for s in policy_statements(template, "OrdersJobPolicy")
            if "s3:DeleteObject" in actions(s) and "Raw" in json.dumps(s["Resource"])
        ]

    # GIVEN orders as shipped (kept for good), and orders kept 400 days
    kept, expiring = _standalone(), _standalone(retention_days=400)
    # THEN the job gets the retention as an argument, "none" without one
    assert _one(kept, "AWS::Glue::Job")["DefaultArguments"]["--retention_days"] == "none"
    assert _one(expiring, "AWS::Glue::Job")["DefaultArguments"]["--retention_days"] == "400"
    # AND only with a retention may its role delete raw objects: in the dataset's day folders
    # alone, not its rejections (orders_rejected/) or Firehose's error records
    assert raw_deletes(kept) == []
    (resource,) = raw_deletes(expiring)
    assert resource["Fn::Join"][1][-1] == "/orders/year=*"


def test_workers_and_timeouts_come_from_the_dataset_file() -> None:
    # GIVEN a dataset file that asks for more and larger workers and a longer timeout
    template = _standalone(workers=10, worker_type="G.2X", timeout_minutes=240, execution_class="FLEX")
    # THEN the job runs on them, on Glue's spare capacity; the data-quality evaluation gets the
    # job's timeout; the pipeline outlasts two runs that each waited 20 minutes for capacity and
    # ran to the timeout, the 2 minutes between them, the evaluation and 15 minutes more
    job = _one(template, "AWS::Glue::Job")
    assert (job["NumberOfWorkers"], job["WorkerType"], job["Timeout"]) == (10, "G.2X", 240)
    assert job["ExecutionClass"] == "FLEX"
    definition = _definition(template)
    assert definition["States"]["StartDataQuality"]["Parameters"]["Timeout"] == 240
    assert definition["TimeoutSeconds"] == (2 * (20 + 240) + 2 + 240 + 15) * 60


def test_pipeline_runs_keep_the_jobs_own_timeout(template: Template) -> None:
    job = _one(template, "AWS::Glue::Job")
    assert (job["NumberOfWorkers"], job["WorkerType"], job["Timeout"]) == (2, "G.1X", 60)
    assert job["ExecutionClass"] == "STANDARD"  # dedicated capacity unless the dataset asks for FLEX
    definition = _definition(template)
    # a Timeout in the StartJobRun call would override the job's for every pipeline run
    assert "Timeout" not in definition["States"]["RunJob"]["Parameters"]
    # a run that failed at its timeout and the run after it, 2 minutes apart, each after up to 15
    # minutes of Glue trying to get capacity, a data-quality evaluation to its timeout (the
    # job's), 15 minutes for the summary, the crawler and notices
    assert definition["TimeoutSeconds"] == (2 * (15 + 60) + 2 + 60 + 15) * 60
    assert definition["States"]["WaitBeforeRunningAgain"]["Seconds"] == 120


def test_every_argument_the_entry_point_resolves_is_passed_to_the_job(template: Template) -> None:
    # getResolvedOptions fails the run at start for a missing argument; Glue supplies these two
    tree = ast.parse((GLUE_JOB_DIR / "job.py").read_text())
    (call,) = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getResolvedOptions"
    ]
    assert isinstance(call.args[1], ast.List)
    resolved = {ast.literal_eval(e) for e in call.args[1].elts}
    passed = {k.removeprefix("--") for k in _one(template, "AWS::Glue::Job")["DefaultArguments"]}
    assert resolved - passed == {"JOB_NAME", "JOB_RUN_ID"}


def test_the_job_policy_allows_every_aws_call_of_the_entry_point(template: Template) -> None:
    # moto does not enforce IAM, so the entry point's own test cannot catch a missing action
    tree = ast.parse((GLUE_JOB_DIR / "job.py").read_text())
    # what the job names its boto3 clients: main()'s, and the raw zone's deletion past a retention
    # (the rest of S3 goes through Hadoop)
    clients = {"glue", "cloudwatch", "s3"}
    calls = set()
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id in clients
        ):
            # a paginator's operation is its argument
            method = n.args[0].value if n.func.attr == "get_paginator" else n.func.attr
            calls.add((n.func.value.id, method))
    apis = {f"{svc}:{boto3.client(svc).meta.method_to_api_mapping[method]}" for svc, method in calls}
    # S3 authorizes DeleteObjects key by key, as s3:DeleteObject
    needed = {{"s3:DeleteObjects": "s3:DeleteObject"}.get(api, api) for api in apis}
    assert {
        "glue:BatchCreatePartition",
        "glue:BatchUpdatePartition",
        "glue:BatchDeletePartition",
        "glue:GetPartitions",
        "cloudwatch:PutMetricData",
        "s3:DeleteObject",
    } <= needed
    statements = policy_statements(template, "OrdersJobPolicy")
    allowed = {a for st in statements if st["Effect"] == "Allow" for a in actions(st)}
    assert needed <= allowed, needed - allowed


def test_job_and_crawler_use_the_security_configuration(template: Template) -> None:
    sec = template.find_resources("AWS::Glue::SecurityConfiguration")
    (sec_id, sec_res) = next(iter(sec.items()))
    enc = sec_res["Properties"]["EncryptionConfiguration"]
    assert enc["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    # by its name, from the dataset's nested stack, which deploys after it
    name = sec_res["Properties"]["Name"]
    assert _one(template, "AWS::Glue::Job")["SecurityConfiguration"] == name == "lake-sbx-lake"
    assert _one(template, "AWS::Glue::Crawler")["CrawlerSecurityConfiguration"] == name
    (nested,) = template.find_resources("AWS::CloudFormation::Stack").values()
    assert nested["DependsOn"] == [sec_id]


def test_each_run_leaves_spark_event_logs_where_the_job_role_may_write_them(template: Template) -> None:
    # the runbook sends operators to a run's Spark UI: Glue writes its event logs every 30 s,
    # encrypted by the job's security configuration
    args = _one(template, "AWS::Glue::Job")["DefaultArguments"]
    assert args["--enable-spark-ui"] == "true"
    path = args["--spark-event-logs-path"]["Fn::Join"][1]
    assert path[0].startswith("s3://") and path[-1] == f"/{SPARK_UI_LOGS}/orders/"
    writes = [st for st in policy_statements(template, "OrdersJobPolicy") if "s3:PutObject" in st["Action"]]
    assert len(writes) == 1
    assert f'/{SPARK_UI_LOGS}/orders/*"' in json.dumps(writes[0]["Resource"])


def test_crawler_is_incremental_and_never_rewrites_the_declared_schema(template: Template) -> None:
    crawler = _one(template, "AWS::Glue::Crawler")
    assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    configuration = json.loads(crawler["Configuration"])
    assert configuration["CrawlerOutput"]["Partitions"] == {"AddOrUpdateBehavior": "InheritFromTable"}
    # one table per include path: days of another schema are drift to log, not tables to make
    assert configuration["Grouping"] == {"TableGroupingPolicy": "CombineCompatibleSchemas"}
    # nor indexes on them (a crawler's default)
    assert configuration["CreatePartitionIndex"] is False
    # and no new table in any case: its role may change partitions of the declared tables only
    crawler_actions = {a for st in policy_statements(template, "OrdersCrawlerPolicy") for a in actions(st)}
    glue_actions = {a for a in crawler_actions if a.startswith("glue:")}
    writes = {a for a in glue_actions if not a.startswith(("glue:Get", "glue:BatchGet"))}
    assert "glue:BatchCreatePartition" in writes and all(a.endswith("Partition") for a in writes), writes
    # the curated and quarantined rows' folders alone: not the job's manifests, run summaries or
    # Spark event logs, which sit under the same bucket
    targets = crawler["Targets"]["S3Targets"]
    assert [t["Path"]["Fn::Join"][1][-1] for t in targets] == ["/orders/", "/orders_quarantine/"]
    assert all(t["Exclusions"] == ["_*/**"] for t in targets)
    # with Lake Formation on, the crawler reads through its credentials, which the job too may get
    assert crawler["LakeFormationConfiguration"] == {"UseLakeFormationCredentials": True}
    for policy in ("OrdersJobPolicy", "OrdersCrawlerPolicy"):
        data_access = [
            st for st in policy_statements(template, policy) if "GetDataAccess" in str(st["Action"])
        ]
        assert [(st["Action"], st["Resource"]) for st in data_access] == [
            ("lakeformation:GetDataAccess", "*")
        ]


def test_data_quality_ruleset_is_generated_from_the_dataset_file(template: Template) -> None:
    ruleset = _one(template, "AWS::Glue::DataQualityRuleset")
    assert ruleset["Ruleset"] == dqdl(ORDERS)
    text = ruleset["Ruleset"]
    for rule in (
        'IsComplete "order_id"',
        'IsUnique "order_id"',
        'IsComplete "amount"',
        'ColumnValues "status" in ["PLACED", "PAID", "SHIPPED", "CANCELLED", "RETURNED", NULL]',
        'ColumnValues "amount" >= 0',
        '(ColumnValues "country" matches "^[A-Z]{2}$") OR (ColumnValues "country" = NULL)',
    ):
        assert rule in text
    assert ruleset["TargetTable"] == {"DatabaseName": "lake_sbx_curated", "TableName": "orders"}


def test_quality_rules_hold_their_sql_twins_over_columns_named_like_sql_keywords(tmp_path: Path) -> None:
    # GIVEN a dataset whose name and columns are SQL keywords, with a rule of every kind
    raw = {
        "name": "order",
        "record_key": "select",
        "event_time": "end",
        "columns": [
            {"name": "select", "type": "string", "required": True, "max_length": 8},
            {"name": "end", "type": "timestamp", "required": True},
            {"name": "group", "type": "string", "enum": ["a", "b"]},
            {"name": "check", "type": "string", "pattern": "[a-z]+"},
            {"name": "limit", "type": "int", "min": 0, "max": 9},
        ],
    }
    (tmp_path / "order.json").write_text(json.dumps(raw))
    dataset = load_dataset(tmp_path / "order.json")
    # WHEN every rule's SQL twin runs over the (empty) local table, over bad rows, then over rows
    # at each bound
    con = duckdb_over(tmp_path, dataset)
    passed = evaluate_quality(con, dataset)

    def holding(rows: str) -> dict[str, bool]:
        con.execute(
            f'CREATE OR REPLACE TABLE "order" AS SELECT * FROM (VALUES {rows})'
            ' AS t("select", "end", "group", "check", "limit")'
        )
        return evaluate_quality(con, dataset)

    failed = holding(
        "('toolong-key', NULL::TIMESTAMP, 'c', 'X1', 10), ('toolong-key', NULL, NULL, NULL, -1),"
        " (NULL, NULL, NULL, NULL, NULL)"
    )
    at_the_bounds = holding(
        "('12345678', TIMESTAMP '2024-05-01 10:00:00', 'b', 'z', 0),"
        " ('k', TIMESTAMP '2024-05-01 10:00:00', NULL, NULL, 9),"
        " ('k2', TIMESTAMP '2024-05-01 10:00:00', 'a', 'abc', NULL)"
    )
    # THEN each one runs, holds on no rows and fails on the bad ones; values at each bound, and
    # NULL in an optional column, pass every rule
    assert len(passed) == len(rules(dataset)) == 8
    assert all(passed.values()) and not any(failed.values())
    assert all(at_the_bounds.values()), at_the_bounds


def test_every_task_retries_with_jittered_backoff_and_catches_to_an_alert(template: Template) -> None:
    states = _definition(template)["States"]
    task_names = [n for n, s in states.items() if s["Type"] == "Task"]
    assert {
        "RunJob",
        "StartCrawler",
        "StartDataQuality",
        "GetDataQualityRun",
        "GetDataQualityResult",
        "ReadRulesNotPassed",
        "NotifySuccess",
        "NotifyNoRowsToCheck",
        "NotifyFailure",
    } <= set(task_names)
    for name in task_names:
        retry = states[name]["Retry"]
        assert retry, name
        # waits of up to 30 s, 60 s and 120 s (full jitter, each under 5 minutes): three retries,
        # two for the call that starts a job run
        attempts = 2 if name in ("RunJob", "RunJobAgain") else 3
        found = [
            (r["IntervalSeconds"], r["BackoffRate"], r["MaxAttempts"], r["MaxDelaySeconds"]) for r in retry
        ]
        assert found == [(30, 2, attempts, 300)] and retry[0]["JitterStrategy"] == "FULL", name
        if name != "NotifyFailure":
            catches = [c for c in states[name]["Catch"] if c["ErrorEquals"] == ["States.ALL"]]
            assert catches, name
            target = states[catches[0]["Next"]]
            if target["Type"] == "Choice":  # RunJob: a run that ended FAILED is started once more first
                target = states[target["Default"]]
            # through Pass states that name the step (and, for the rules, say they were not read)
            while target["Type"] == "Pass" and target["Next"] != "NotifyFailure":
                target = states[target["Next"]]
            assert target["Type"] == "Pass" and target["Next"] == "NotifyFailure", name
    # the job's runs: only the calls' own errors are retried, never a run that failed or timed out
    # (States.TaskFailed would match every error); a FAILED run is started once more, after a wait
    for name in ("RunJob", "RunJobAgain"):
        (retrier,) = states[name]["Retry"]
        assert retrier["ErrorEquals"] == list(GLUE_CALL_ERRORS), name
    again = states["JobRunFailed?"]
    no_cause, failed = again["Choices"]
    assert no_cause == {"Not": {"Variable": "$.error.Cause", "IsPresent": True}, "Next": "RunJobFailed"}
    assert {c["StringMatches"] for c in failed["Or"]} == {
        '*"JobRunState":"FAILED"*',
        '*"JobRunState": "FAILED"*',
    }
    assert states[failed["Next"]]["Next"] == "RunJobAgain"
    assert again["Default"] == "RunJobFailed"
    for name in ("RunJob", "RunJobAgain"):  # the job's previous run still going is judged alike
        busy = {"ErrorEquals": ["Glue.ConcurrentRunsExceededException"], "ResultPath": "$.error"}
        assert states[name]["Catch"][0] == {**busy, "Next": "OnlyNewDataRequested?"}, name
    assert states["RunJobAgain"]["Catch"][1:] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RunJobFailed"}
    ]
    assert states["RunJobAgain"]["Next"] == states["RunJob"]["Next"] == "ReadRunSummary"
    assert states["RunJob"]["Resource"].endswith(
        ':glue:startJobRun.sync"'
    ) or "startJobRun.sync" in json.dumps(states["RunJob"])
    assert states["NotifyFailure"]["Next"] == "PipelineFailed"
    message = states["NotifyFailure"]["Parameters"]["Message.$"]
    for part in ("failed at step", "$.failedStep", "$.error.Error", "$$.Execution.Id"):
        assert part in message


def test_a_run_that_rebuilt_no_day_skips_the_crawler_and_data_quality(template: Template) -> None:
    states = _definition(template)["States"]
    # the job writes <run_summary_path><run id>.json last; the state machine reads that key
    summary_path = _one(template, "AWS::Glue::Job")["DefaultArguments"]["--run_summary_path"]["Fn::Join"][1]
    assert summary_path[-1].endswith(f"/{RUN_SUMMARIES}/orders/")
    read = states[states["RunJob"]["Next"]]
    assert read["Resource"].endswith(":states:::aws-sdk:s3:getObject")
    assert read["Parameters"]["Key.$"] == f"States.Format('{RUN_SUMMARIES}/orders/{{}}.json', $.job.JobRunId)"
    assert read["ResultSelector"] == {"summary.$": "States.StringToJson($.Body)"}
    choice = states[read["Next"]]
    assert choice["Type"] == "Choice"
    (rebuilt,) = choice["Choices"]
    assert rebuilt == {
        "Variable": f"{read['ResultPath']}.summary.partitions_rebuilt",
        "NumericGreaterThan": 0,
        "Next": "StartCrawler",
    }
    assert states[choice["Default"]]["Type"] == "Succeed"
    assert states["StartCrawler"]["Next"] == "AnyRowsWritten?"
    # data quality is evaluated on the days the run wrote, and skipped when it wrote none
    written = states["AnyRowsWritten?"]
    assert written["Choices"] == [
        {"Variable": "$.run.summary.quality_predicate", "StringEquals": "", "Next": "NotifyNoRowsToCheck"}
    ]
    assert written["Default"] == "StartDataQuality"
    evaluation = states["StartDataQuality"]["Parameters"]
    table = evaluation["DataSource"]["GlueTable"]
    assert table["AdditionalOptions"] == {"pushDownPredicate.$": "$.run.summary.quality_predicate"}
    # its outcome is published as the metrics the dashboard reads (rules passed and failed), which
    # Glue also requires before it publishes the event the failure rule matches, and
    # an optional column's "(bound) OR (= NULL)" rules are held row by row, as the DQDL reference
    # asks for such rules (by default each side is judged over the whole column)
    assert evaluation["AdditionalRunOptions"] == {
        "CloudWatchMetricsEnabled": True,
        "CompositeRuleEvaluationMethod": "ROW",
    }
    assert any(") OR (ColumnValues" in r.dqdl for r in rules(ORDERS))
    # the success notice reports what the run did
    assert "$.run.summary.rows_written" in states["NotifySuccess"]["Parameters"]["Message.$"]
    # the state machine may read the summaries (and decrypt them through S3) and nothing else
    policy = policy_statements(template, "OrdersStateMachinePolicy")
    reads = [st for st in policy if st["Action"] == "s3:GetObject"]
    assert len(reads) == 1 and json.dumps(reads[0]["Resource"]).endswith(f'/{RUN_SUMMARIES}/orders/*"]]}}')
    decrypt = [st for st in policy if st["Action"] == "kms:Decrypt"]
    assert len(decrypt) == 1 and "kms:ViaService" in decrypt[0]["Condition"]["StringEquals"]
    # its data-quality calls name the dataset's ruleset, but for reading a run by its id, which
    # Glue authorizes on dataQualityRuleset/*
    quality = {
        action: json.dumps(st["Resource"]).rsplit(":", 1)[-1]
        for st in policy
        for action in actions(st)
        if "DataQuality" in action
    }
    assert quality == {
        "glue:StartDataQualityRulesetEvaluationRun": 'dataQualityRuleset/lake-sbx-orders-curated"]]}',
        "glue:GetDataQualityResult": 'dataQualityRuleset/lake-sbx-orders-curated"]]}',
        "glue:GetDataQualityRuleset": 'dataQualityRuleset/lake-sbx-orders-curated"]]}',
        "glue:GetDataQualityRulesetEvaluationRun": 'dataQualityRuleset/*"]]}',
    }


def test_a_run_started_with_days_to_rebuild_passes_them_to_the_job(template: Template) -> None:
    definition = _definition(template)
    states = definition["States"]
    # {"rebuild": "2024-05-01..2024-05-31"} goes to the job; a scheduled start rebuilds nothing more
    requested = states[definition["StartAt"]]
    assert requested["Choices"] == [{"Variable": "$.rebuild", "IsPresent": True, "Next": "RunJob"}]
    default = states[requested["Default"]]
    assert (default["Result"], default["ResultPath"], default["Next"]) == ("none", "$.rebuild", "RunJob")
    assert states["RunJob"]["Parameters"]["Arguments"] == {"--rebuild_days.$": "$.rebuild"}
    assert _one(template, "AWS::Glue::Job")["DefaultArguments"]["--rebuild_days"] == "none"


def test_quality_scope_table_evaluates_the_whole_table_after_every_run() -> None:
    # the synthesized dataset keeps the default (days_written), asserted on its definition above
    assert quality_source("lake_curated", "orders", "table") == {
        "DatabaseName": "lake_curated",
        "TableName": "orders",
    }


def test_state_machine_logs_encrypted_and_traces(template: Template) -> None:
    props = _one(template, "AWS::StepFunctions::StateMachine")
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert all("KmsKeyId" in g["Properties"] for g in groups.values())


def test_schedule_from_the_dataset_file_starts_the_state_machine(template: Template) -> None:
    schedule = _one(template, "AWS::Scheduler::Schedule")
    assert schedule["ScheduleExpression"] == ORDERS.processing.schedule == "rate(1 hour)"
    assert schedule["Target"]["Arn"]["Ref"].startswith("OrdersStateMachine")
    # a start that fails is tried again for up to an hour (the next run's start is due then)
    assert schedule["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 5}
    # then dropped: in the lake's schedule group, whose dropped starts alarm (test_foundation);
    # under an id of its own, so a deployment from before the group replaces its schedule
    # rather than fail to find it in the group (aws/aws-cdk#34216)
    assert schedule["GroupName"] == "lake-sbx"
    (logical_id,) = template.find_resources("AWS::Scheduler::Schedule")
    assert logical_id.startswith("OrdersGroupedSchedule")


def _stale_alarm(template: Template) -> dict[str, Any] | None:
    alarms = [
        a["Properties"]
        for lid, a in template.find_resources("AWS::CloudWatch::Alarm").items()
        if lid.startswith("OrdersStaleAlarm")
    ]
    assert len(alarms) <= 1
    return alarms[0] if alarms else None


def test_curated_data_without_a_successful_run_for_hours_alarms(template: Template) -> None:
    # GIVEN an hourly pipeline that may take 227 minutes (two job runs and the evaluation)
    assert (ORDERS.processing.schedule, pipeline_timeout_minutes(ORDERS.processing)) == ("rate(1 hour)", 227)
    alarm = _stale_alarm(template)
    assert alarm is not None
    # THEN no successful execution in each of the last 6 hours (two intervals and the timeout,
    # 347 minutes, rounded up) alarms, and no data at all is a breach: nothing ran
    assert alarm["MetricName"] == "ExecutionsSucceeded"
    (state_machine,) = template.find_resources("AWS::StepFunctions::StateMachine")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": state_machine}}]
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        3600,
        1,
        "LessThanThreshold",
    )
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 6
    assert alarm["TreatMissingData"] == "breaching"
    # a new alarm waits those hours before it judges them: before the deployment nothing ran
    assert alarm["WarmUpConfiguration"] == {
        "WarmUpPeriodDurationInMinutes": 360,
        "OnlyStartEvaluatingAfterWarmUpPeriodEnds": True,
    }
    assert alarm["AlarmActions"] == alarm["OKActions"] and alarm["AlarmActions"]
    assert "disabled or deleted schedule" in alarm["AlarmDescription"]


@pytest.mark.parametrize(
    ("processing", "hours"),
    [
        ({}, 6),
        ({"schedule": "rate(15 minutes)"}, 5),  # 30 + 227 minutes
        ({"schedule": "rate(1 day)"}, 52),  # 2,880 + 227 minutes
        ({"schedule": "rate(1 day)", "execution_class": "FLEX"}, 52),  # 2,880 + 237
        ({"schedule": "rate(3 days)"}, 148),
        ({"schedule": "rate(4 days)"}, 168),  # CloudWatch's 7 days at most
        ({"schedule": "rate(1 hour)", "timeout_minutes": 2880}, 147),  # two runs of 48 hours
        ({"schedule": "rate(1 hour)", "stale_after_hours": 3}, 3),  # the file's own
        ({"schedule": "cron(0 6 * * ? *)", "stale_after_hours": 30}, 30),
        ({"stale_after_hours": 0}, 0),
    ],
    ids=repr,
)
def test_stale_hours_are_derived_from_the_schedule_unless_the_dataset_file_names_them(
    processing: dict[str, Any], hours: int
) -> None:
    # GIVEN orders.json with these processing settings: WHEN parsed, THEN the file is accepted
    raw = json.loads((DATASETS_DIR / "orders.json").read_text())
    raw["processing"].update(processing)
    settings = parse_dataset(raw, "orders.json").processing
    assert settings == dataclasses.replace(ORDERS.processing, **processing)
    assert stale_after_hours(settings) == hours


def test_a_dataset_file_may_go_without_the_stale_data_alarm() -> None:
    # GIVEN a daily cron schedule: WHEN the file names 30 hours, THEN the alarm waits 30 of them
    alarm = _stale_alarm(_standalone(schedule="cron(0 6 * * ? *)", stale_after_hours=30))
    assert alarm is not None
    assert alarm["EvaluationPeriods"] == 30
    assert alarm["WarmUpConfiguration"]["WarmUpPeriodDurationInMinutes"] == 1800
    # WHEN it names 0, THEN there is no such alarm (the other alarms stay)
    without = _standalone(schedule="cron(0 6 * * ? *)", stale_after_hours=0)
    assert _stale_alarm(without) is None
    assert without.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"MetricName": "ExecutionsFailed"}}
    )


def test_alarms_and_failure_rules_reach_the_alert_topic(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    alarms = {k: a for k, a in alarms.items() if not k.startswith("OrdersStaleAlarm")}  # above
    # a notice the rules below could not deliver waits in their dead-letter queue, and alarms
    undelivered = {k: a for k, a in alarms.items() if a["Properties"]["Namespace"] == "AWS/SQS"}
    ((_, dlq_alarm),) = undelivered.items()
    ((dlq, queue),) = template.find_resources("AWS::SQS::Queue").items()
    # they wait there as long as SQS keeps a message (14 days), not its default 4
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq_alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq_alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}
    ]
    assert (dlq_alarm["Properties"]["Statistic"], dlq_alarm["Properties"]["Threshold"]) == ("Maximum", 0)
    alarms = {k: a for k, a in alarms.items() if k not in undelivered}
    failed = next(a for a in alarms.values() if a["Properties"]["MetricName"] == "ExecutionsFailed")
    assert (
        dlq_alarm["Properties"]["AlarmActions"]
        == dlq_alarm["Properties"]["OKActions"]
        == failed["Properties"]["AlarmActions"]  # the alert topic
    )
    names = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    assert names == [
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "RowsQuarantined",
        "UnplacedObjects",
        "glue.driver.aggregate.numFailedTasks",
    ]
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    # each fires on one occurrence, the job's counts summed per hour and the rest per 5 minutes;
    # no data (no run) is no breach
    assert {
        a["Properties"]["MetricName"]: tuple(
            a["Properties"][k]
            for k in (
                "Threshold",
                "ComparisonOperator",
                "EvaluationPeriods",
                "Period",
                "Statistic",
                "TreatMissingData",
            )
        )
        for a in alarms.values()
    } == {
        name: (
            0,
            "GreaterThanThreshold",
            1,
            3600 if name in ("UnplacedObjects", "RowsQuarantined") else 300,
            "Sum",
            "notBreaching",
        )
        for name in names
    }
    rules = template.find_resources("AWS::Events::Rule")
    patterns = {r["Properties"]["EventPattern"]["detail-type"][0]: r["Properties"] for r in rules.values()}
    assert sorted(patterns) == [
        "Data Quality Evaluation Results Available",
        "Glue Crawler State Change",
        "Glue Job State Change",
    ]
    # the crawler runs on after the state machine started it: its failure is reported by this rule
    (crawler,) = template.find_resources("AWS::Glue::Crawler")
    crawled = patterns["Glue Crawler State Change"]["EventPattern"]["detail"]
    assert crawled == {"crawlerName": [{"Ref": crawler}], "state": ["Failed"]}
    for rule in rules.values():
        target = rule["Properties"]["Targets"][0]
        assert "DeadLetterConfig" in target and "InputTransformer" in target
        # a notice SNS cannot take yet is tried for a day (up to 20 times) before the dead letters
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 20}


#: Each failure rule's detail type, and a sample event of that type in ``tests/events/``: the job's
#: and the crawler's as EventBridge's sample events have them, the data-quality result as the
#: sample of Glue's page on data-quality alerts (ruleset names in ``detail.rulesetNames``).
GLUE_SAMPLE_EVENTS = {
    "Glue Job State Change": "glue_job_state_change.json",
    "Glue Crawler State Change": "glue_crawler_state_change.json",
    "Data Quality Evaluation Results Available": "glue_data_quality_results.json",
}


def test_each_failure_rule_takes_the_event_glue_sends_and_names_what_failed(sandbox: Synth) -> None:
    rules = {
        r["Properties"]["EventPattern"]["detail-type"][0]: (
            sandbox.event_pattern(sandbox.lake.processing, r["Properties"]["EventPattern"]),
            r["Properties"]["Targets"][0]["InputTransformer"],
        )
        for r in sandbox.template_json(sandbox.lake.processing)["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
    }
    assert sorted(rules) == sorted(GLUE_SAMPLE_EVENTS)

    def notice(kind: str, **detail: Any) -> str | None:
        """What the rule for ``kind`` publishes when Glue sends its sample event with ``detail``
        fields replaced (as deployed: the pattern resolved), or None when the rule ignores it."""
        event = json.loads((EVENTS / GLUE_SAMPLE_EVENTS[kind]).read_text())
        event["detail"].update(detail)
        pattern, transformer = rules[kind]
        if not pattern.matches_event(event):
            return None
        event["ingestion-time"] = event["time"]
        message: str = EventTemplateParser.parse(
            transformer["InputTemplate"], transformer["InputPathsMap"], event
        )
        return message

    job = {"jobName": "lake-sbx-orders-raw-to-curated", "jobRunId": "jr_0123", "message": "boom"}
    for state in ("FAILED", "TIMEOUT", "ERROR"):
        expected = f"Glue job of orders {state}: boom (run jr_0123)"
        assert notice("Glue Job State Change", **job, state=state) == expected
    assert notice("Glue Job State Change", **job, state="SUCCEEDED") is None
    assert notice("Glue Job State Change", **job, state="STOPPED") is None
    assert notice("Glue Job State Change", **{**job, "jobName": "someone-elses"}, state="FAILED") is None

    crawler = "lake-sbx-orders-curated"
    assert notice("Glue Crawler State Change", crawlerName=crawler) == (
        "Crawler of orders failed: Internal Service Exception (log: "
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:"
        "group=/aws-glue/crawlers;stream=test-crawler-notification)"
    )
    assert notice("Glue Crawler State Change", crawlerName=crawler, state="Succeeded") is None
    assert notice("Glue Crawler State Change", crawlerName="someone-elses") is None

    results = "Data Quality Evaluation Results Available"
    ruleset = ["lake-sbx-orders-curated"]
    expected = "Data quality of orders failed: score 0.8 (evaluation run dqrun-12334567890)"
    assert notice(results, rulesetNames=ruleset, state="FAILED", score=0.8) == expected
    # an evaluation that passed, or one of another ruleset: not published
    assert notice(results, rulesetNames=ruleset) is None
    assert notice(results, rulesetNames=["someone-elses"], state="FAILED", score=0.8) is None


def test_roles_have_no_inline_or_aws_managed_policies(template: Template) -> None:
    assert template.find_resources("AWS::IAM::Policy") == {}
    for role in template.find_resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
        assert "Policies" not in role["Properties"]


def test_one_dashboard_covers_the_whole_pipeline(sandbox: Synth) -> None:
    dashboards = sandbox.template(sandbox.lake.observability).find_resources("AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = json.dumps(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for metric in (
        "DeliveryToS3.DataFreshness",
        "IncomingRecords",  # what reached the stream, whatever the transform then made of it
        "RecordsRejected",
        "Errors",
        "Duration",
        "RowsRead",
        "RowsWritten",
        "RowsQuarantined",
        "DuplicatesDropped",
        "UnplacedObjects",  # every count the job publishes (test_raw_to_curated)
        "glue.driver.aggregate.elapsedTime",
        "ExecutionsFailed",
    ):
        assert metric in body, metric
    layout = joined_json(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    graphed = [m for w in layout["widgets"] for m in w["properties"].get("metrics", [])]
    # the ruleset's rules passed and failed, and the analysts' bytes scanned, found whatever
    # dimensions Glue and Athena publish them under (neither documents them)
    assert [m[0]["expression"] for m in graphed if "expression" in m[0]] == [
        "SEARCH(' Namespace=\"Glue Data Quality\" \"lake-sbx-orders-curated\" ', 'Maximum', 3600)",
        'SEARCH(\' Namespace="AWS/Athena" MetricName="ProcessedBytes" WorkGroup="lake-sbx-analysts" \', '
        "'Sum', 3600)",
        'SEARCH(\' Namespace="AWS/Athena" MetricName="ProcessedBytes" WorkGroup="lake-sbx-regional-analysts" \', '
        "'Sum', 3600)",
    ]
    # the job's ETL time: Glue reports it in deltas, so summed (per hour: one run's)
    (elapsed,) = [m for m in graphed if "glue.driver.aggregate.elapsedTime" in m]
    assert elapsed[-1] == {"period": 3600, "stat": "Sum"}
    # a day at a glance, and each row of widgets fills the dashboard's 24 columns with no gap
    assert layout["start"] == "-P1D"
    rows: dict[int, list[tuple[int, int]]] = {}
    for widget in layout["widgets"]:
        rows.setdefault(widget["y"], []).append((widget["x"], widget["width"]))
    assert len(rows) >= 4
    # first, the state of every alarm of the lake, whichever stack holds it
    overview = layout["widgets"][0]
    assert (overview["type"], overview["y"], overview["width"]) == ("alarm", 0, 24)
    names = [
        r["Properties"]["AlarmName"]
        for template in sandbox.all_templates().values()
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(overview["properties"]["alarms"]) == len(names) == 22
    # each by the ARN its name gives, every alarm once, named after its stack and construct path
    deployed = json.loads(sandbox.resolved(sandbox.lake.observability, sandbox.dashboard_body()))
    shown = deployed["widgets"][0]["properties"]["alarms"]
    assert sorted(shown) == sorted(f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{n}" for n in names)
    assert "lake-sbx-processing-Orders-PipelineFailed" in names
    # and no output of the stacks that hold them: a stack's outputs do not grow with its alarms
    outputs = [o for t in sandbox.all_templates().values() for o in t.get("Outputs", {})]
    assert not [o for o in outputs if "Alarm" in o]
    for widgets in rows.values():
        edges = sorted(widgets)
        assert edges[0][0] == 0 and sum(w for _, w in edges) == 24, edges
        assert all(x + w == next_x for (x, w), (next_x, _) in itertools.pairwise(edges)), edges


def test_an_alarm_is_named_after_its_stack_and_its_path_nested_stacks_left_out() -> None:
    # GIVEN an alarm under a dataset's construct in a nested stack of a stack, and one at the top
    stack = cdk.Stack(cdk.App(), "lake-x-processing")
    pipeline = Construct(cdk.NestedStack(stack, "Orders"), "Orders")
    metric = cloudwatch.Metric(namespace="Test", metric_name="Errors")
    nested = alarm_above(pipeline, "PipelineFailedAlarm", metric, threshold=0, description="d")
    top = alarm_above(stack, "Alarm", metric, threshold=0, description="d")
    # WHEN named THEN by the top-level stack and the construct ids below it, "Alarm" dropped at
    # the end (unless it is the whole id), in the template and in the ARN another stack builds
    assert stack.resolve(nested.node.default_child.alarm_name) == "lake-x-processing-Orders-PipelineFailed"  # type: ignore[union-attr]
    assert stack.resolve(top.node.default_child.alarm_name) == "lake-x-processing-Alarm"  # type: ignore[union-attr]
    other = cdk.Stack(stack.node.scope, "lake-x-observability")  # type: ignore[arg-type]
    assert other.resolve(alarm_arn(other, nested))["Fn::Join"][1][-1] == (
        ":alarm:lake-x-processing-Orders-PipelineFailed"
    )
    # AND a name over CloudWatch's 255 characters stops synthesis, naming it
    with pytest.raises(ValueError, match=r"has 256 characters, over CloudWatch's 255"):
        alarm_above(stack, "A" * (256 - len("lake-x-processing-")), metric, threshold=0, description="d")


def test_more_alarms_than_a_status_widget_shows_fill_as_many_widgets_as_they_need() -> None:
    # GIVEN the alarms of a lake of 20 datasets: 14 each beside the stage's own, more than the
    # 100 one alarm status widget shows
    stack = cdk.Stack(cdk.App(), "Alarms")
    metric = cloudwatch.Metric(namespace="Test", metric_name="Errors")
    alarms = [metric.create_alarm(stack, f"Alarm{i}", threshold=1, evaluation_periods=1) for i in range(292)]
    # WHEN they are laid out THEN three full-width widgets of at most 100, numbered, show every
    # alarm once, in order, each a little taller for every eight of its own
    widgets = [stack.resolve(w.to_json())[0] for w in alarm_status_widgets(alarms)]
    assert [w["properties"]["title"] for w in widgets] == [
        f"Alarms of the lake ({i} of 3)" for i in (1, 2, 3)
    ]
    shown = [arn["Fn::GetAtt"][0] for w in widgets for arn in w["properties"]["alarms"]]
    assert shown == [stack.resolve(a.alarm_arn)["Fn::GetAtt"][0] for a in alarms]
    assert [len(w["properties"]["alarms"]) for w in widgets] == [ALARMS_PER_WIDGET, ALARMS_PER_WIDGET, 92]
    assert [(w["width"], w["height"]) for w in widgets] == [(24, 15), (24, 15), (24, 14)]
    # AND 100 alarms, or none, take one widget, or none
    assert [w.to_json()[0]["properties"]["title"] for w in alarm_status_widgets(alarms[:100])] == [
        "Alarms of the lake"
    ]
    assert alarm_status_widgets([]) == []


def test_the_tools_name_the_pipeline_the_stack_deploys(template: Template) -> None:
    # make erase and make backfill end with the line that starts the pipeline they leave work to,
    # from the raw bucket's name alone; a bucket named otherwise gets no such line
    (props,) = [r["Properties"] for r in template.find_resources("AWS::StepFunctions::StateMachine").values()]
    bucket = "lake-sbx-raw-123456789012-eu-west-1"
    assert start_pipeline_command(bucket, "orders") == (
        "aws stepfunctions start-execution --region eu-west-1 --state-machine-arn "
        f"arn:aws:states:eu-west-1:123456789012:stateMachine:{props['StateMachineName']}"
    )
    # a name with underscores, as resource names write it
    assert str(start_pipeline_command(bucket, "page_views")).endswith(
        ":stateMachine:lake-sbx-page-views-pipeline"
    )
    assert start_pipeline_command("my-raw-bucket", "orders") is None


def test_runs_that_succeeded_notify_the_notices_topic_and_failures_the_alerts(
    sandbox: Synth, template: Template
) -> None:
    # an hourly pipeline succeeds once an hour: its notices go apart from the alerts, so that whoever
    # is on call for the alert topic is not sent every run
    machine = _one(template, "AWS::StepFunctions::StateMachine")
    states = json.loads(sandbox.resolved(sandbox.lake.processing, machine["DefinitionString"]))["States"]
    topic = {
        name: state["Parameters"]["TopicArn"].rsplit(":", 1)[1]
        for name, state in states.items()
        if state["Type"] == "Task" and "TopicArn" in state.get("Parameters", {})
    }
    assert {n: t.startswith("NoticesTopic") for n, t in topic.items()} == {
        "NotifySuccess": True,
        "NotifyNoRowsToCheck": True,
        "NotifyFailure": False,
    }
    assert topic["NotifyFailure"].startswith("AlertsTopic")
    # and the state machine may publish to both
    publish = [
        st for st in policy_statements(template, "OrdersStateMachinePolicy") if "sns:Publish" in actions(st)
    ]
    published_to = json.dumps([st["Resource"] for st in publish])
    assert "OutputRefNoticesTopic" in published_to and "OutputRefAlertsTopic" in published_to


def test_a_pipeline_given_no_notice_topic_notifies_the_alert_topic() -> None:
    # the construct's documented default
    states = _definition(_standalone())["States"]
    assert (
        states["NotifySuccess"]["Parameters"]["TopicArn"] == states["NotifyFailure"]["Parameters"]["TopicArn"]
    )
