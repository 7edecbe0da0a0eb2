"""The batch path of one dataset: Glue job, crawler, data-quality ruleset, state machine, schedule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Arn, ArnFormat, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_constructs.alerts import AlertRules, alarm_above, alarm_without
from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, rendered
from cdk_constructs.pipeline_definition import (
    RUN_AGAIN_AFTER,
    CatalogTarget,
    PipelineDefinition,
    PipelineTargets,
)
from cdk_constructs.state_machines import (
    execution_alarms,
    logged_state_machine,
    schedule_state_machine,
)
from cdk_constructs.storage import RUN_SUMMARIES, SPARK_UI_LOGS
from datalake.dataset import DATASET_TAG, MAX_STALE_HOURS, Dataset, Processing, schedule_interval_minutes
from datalake.quality import dqdl

GLUE_JOB_DIR = Path(__file__).resolve().parent.parent / "glue_jobs" / "raw_to_curated"
#: Glue 5.1: Spark 3.5.6, Python 3.11 (tests run the same code on pyspark 3.5.6).
GLUE_VERSION = "5.1"
METRICS_NAMESPACE = "DataLake/Processing"
#: The counts the job publishes per run (``_publish_metrics`` in glue_jobs/raw_to_curated/job.py,
#: which is deployed alone and cannot import this; a test keeps the two in step).
JOB_COUNTS = (
    "RowsRead",
    "RowsWritten",
    "RowsQuarantined",
    "DuplicatesDropped",
    "UnplacedObjects",
    "ExpiredObjects",
)

#: How long Glue may keep a new run WAITING for capacity, by execution class (Glue's "job run
#: statuses"): a Standard run of a job without retries (this job's MaxRetries is 0) tries for up
#: to 15 minutes, then ends FAILED; a Flex run waits up to 20 (a forced start is tried after 15),
#: then starts or fails. Whether the wait counts toward the run's timeout is not said (the API
#: calls the timeout the time a run can consume resources), so the pipeline allows for both.
CAPACITY_WAIT_MINUTES = {"STANDARD": 15, "FLEX": 20}
#: The steps after the job other than the data-quality evaluation: the run's summary, the
#: crawler's start, the evaluation's polls and the notices.
STEPS_AFTER_JOB_MINUTES = 15


def pipeline_timeout_minutes(processing: Processing) -> int:
    """The longest a pipeline run can take without anything being wrong: a job run that fails at
    its timeout, the wait before it runs again, the second run (each after Glue's longest wait for
    capacity), a data-quality evaluation to its timeout (the job's: it reads what the job wrote),
    then the other steps. Past it, the execution times out and alarms."""
    job = processing.timeout_minutes
    run = job + CAPACITY_WAIT_MINUTES[processing.execution_class]
    return 2 * run + int(RUN_AGAIN_AFTER.to_minutes()) + job + STEPS_AFTER_JOB_MINUTES


def stale_after_hours(processing: Processing) -> int:
    """Hours without a successful pipeline run before the stale-data alarm; 0: no alarm.

    Unless the dataset file names them, two of the schedule's intervals and the pipeline's
    timeout, at most :data:`~datalake.dataset.MAX_STALE_HOURS`: a success is followed by the
    next one within an interval and a run's length, so a single failed run, which alarms on its
    own, does not also count as stale data. The dataset file's check sees that a ``cron(...)``
    schedule names them and a ``rate(...)`` of a week or more sets 0."""
    if processing.stale_after_hours is not None:
        return processing.stale_after_hours
    interval = schedule_interval_minutes(processing.schedule)
    assert interval is not None, "the dataset file's check requires stale_after_hours with cron(...)"
    minutes = 2 * interval + pipeline_timeout_minutes(processing)
    return min(-(-minutes // 60), MAX_STALE_HOURS)


@dataclass(frozen=True)
class JobScripts:
    """The job's code as S3 assets (no bundling: the two files are uploaded as they are)."""

    entry: s3_assets.Asset
    transforms: s3_assets.Asset

    @classmethod
    def create(cls, scope: Construct) -> JobScripts:
        return cls(
            entry=s3_assets.Asset(scope, "RawToCuratedScript", path=str(GLUE_JOB_DIR / "job.py")),
            transforms=s3_assets.Asset(
                scope, "RawToCuratedTransforms", path=str(GLUE_JOB_DIR / "transforms.py")
            ),
        )


class DatasetPipeline(Construct):
    """Raw to curated for one dataset, run by a Step Functions state machine on a schedule.

    The state machine runs the Glue job synchronously (the job registers the partitions it wrote,
    so they are queryable at once), starts the crawler (new folders only; it logs schema drift and
    never changes the declared tables), evaluates the generated DQDL ruleset and notifies. Every
    task retries its calls with exponential backoff and full jitter; a job run that ended FAILED
    is started once more, one that timed out is not; and every failure publishes the dataset, the
    step, the error and a link to the execution to the alert topic.

    :param alert_topic: failures (the catches, the alarms, the failure rules).
    :param notice_topic: notices of runs that rebuilt days (counts, data-quality score), kept
        apart from the alerts since an hourly pipeline sends one an hour; encrypted, like the
        alert topic, with ``logs_key``. Default: the alert topic.
    :param job_role: role of the job and data-quality runs (policies are added here).
    :param crawler_role: role of the crawler (policies are added here).
    :param lake_formation: the catalog is governed by Lake Formation: the roles get
        ``lakeformation:GetDataAccess`` and the crawler reads with Lake Formation credentials.
    :param schedule_group: the EventBridge Scheduler group of the schedule (the stage's, whose
        dropped invocations alarm; ``default`` is the account's).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        name: str,
        scripts: JobScripts,
        raw_bucket: s3.IBucket,
        raw_key: kms.IKey,
        curated_bucket: s3.IBucket,
        curated_key: kms.IKey,
        logs_key: kms.IKey,
        catalog: CatalogTarget,
        security_configuration: str,
        alert_topic: sns.ITopic,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy | None = None,
        notice_topic: sns.ITopic | None = None,
        job_role: iam.IRole,
        crawler_role: iam.IRole,
        schedule_group: str,
        lake_formation: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        Tags.of(self).add(DATASET_TAG, dataset.name)
        if removal_policy is None:
            removal_policy = RemovalPolicy.RETAIN
        if notice_topic is None:
            notice_topic = alert_topic
        self.dataset = dataset
        self._logs_key = logs_key
        ds = dataset.name
        # curated rows, quarantined rows (both crawled), then the job's manifests, run summaries
        # and Spark event logs
        curated_prefixes = (
            f"{ds}/",
            f"{dataset.quarantine_name}/",
            f"_manifests/{ds}/",
            f"{RUN_SUMMARIES}/{ds}/",
            f"{SPARK_UI_LOGS}/{ds}/",
        )
        self.ruleset_name = f"{name}-curated"

        # --- Glue job -------------------------------------------------------------------------
        self.job_role = job_role
        table_arns = [self._table_arn(catalog.database, t) for t in (catalog.table, catalog.quarantine_table)]
        # With a retention, the job removes the raw days past it: the day folders, nothing else of
        # the raw zone (rejections and delivery errors are under other prefixes).
        raw_days = raw_bucket.arn_for_objects(f"{ds}/year=*")
        expiry = dataset.governance.retention_days is not None
        job_policy = iam.ManagedPolicy(
            self,
            "JobPolicy",
            roles=[self.job_role],
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[raw_bucket.arn_for_objects(f"{ds}/*")]
                ),
                *([iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[raw_days])] if expiry else []),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[raw_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{ds}/*", ds]}},
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[curated_bucket.arn_for_objects(f"{p}*") for p in curated_prefixes],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[curated_bucket.bucket_arn],
                    conditions={
                        "StringLike": {
                            "s3:prefix": [f"{p}*" for p in curated_prefixes] + [ds, dataset.quarantine_name]
                        }
                    },
                ),
                key_use_via("s3", [raw_key], ["kms:Decrypt"]),
                key_use_via("s3", [curated_key], ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]),
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[
                        scripts.entry.bucket.arn_for_objects(scripts.entry.s3_object_key),
                        scripts.transforms.bucket.arn_for_objects(scripts.transforms.s3_object_key),
                    ],
                ),
                iam.PolicyStatement(
                    actions=[
                        "glue:GetTable",
                        "glue:GetPartitions",
                        "glue:BatchCreatePartition",
                        "glue:BatchUpdatePartition",
                        "glue:BatchDeletePartition",
                        "glue:GetDatabase",
                    ],
                    resources=[self._catalog_arn(), self._database_arn(catalog.database), *table_arns],
                ),
                iam.PolicyStatement(
                    actions=["glue:GetDataQualityRuleset", "glue:PublishDataQuality"],
                    resources=[self._ruleset_arn(self.ruleset_name)],
                ),
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            "cloudwatch:namespace": [METRICS_NAMESPACE, "Glue", "Glue Data Quality"]
                        }
                    },
                ),
                self._glue_logs_statement(),
                *self._lake_formation_statements(lake_formation),
            ],
        )
        acknowledge(
            job_policy,
            "Object ARNs under the dataset's own prefixes: the job reads raw objects (and, with a "
            "retention, removes the raw day folders past it) and rewrites curated partitions whose "
            "keys it generates. PutMetricData supports no resource, so "
            "the namespace condition scopes it (and lakeformation:GetDataAccess has none either); "
            "Glue creates its log groups under /aws-glue/.",
            *(
                f"AwsSolutions-IAM5[Resource::{rendered(self, r)}]"
                for r in (
                    raw_bucket.arn_for_objects(f"{ds}/*"),
                    *([raw_days] if expiry else []),
                    *(curated_bucket.arn_for_objects(f"{p}*") for p in curated_prefixes),
                    "*",
                    self._glue_logs_arn(),
                )
            ),
        )
        spec_json = dataset.to_spec_json()
        self.job = glue.CfnJob(
            self,
            "Job",
            name=f"{name}-raw-to-curated",
            description=f"Raw JSON to curated Parquet for {ds}: incremental, late-data safe, idempotent",
            role=self.job_role.role_arn,
            glue_version=GLUE_VERSION,
            # from the dataset file: scaling a dataset out is a config change, not a code change
            worker_type=dataset.processing.worker_type,
            number_of_workers=dataset.processing.workers,
            timeout=dataset.processing.timeout_minutes,
            execution_class=dataset.processing.execution_class,
            # The state machine runs a failed run once more (and knows its run id); a retry by Glue
            # would be a run it does not wait for.
            max_retries=0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            security_configuration=security_configuration,
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl", python_version="3", script_location=scripts.entry.s3_object_url
            ),
            default_arguments={
                "--job-language": "python",
                "--extra-py-files": scripts.transforms.s3_object_url,
                # The job keeps its own manifest of processed objects: bookmarks only track reads
                # through GlueContext, and the job rebuilds whole days from all their raw data.
                "--job-bookmark-option": "job-bookmark-disable",
                "--enable-metrics": "true",
                "--enable-observability-metrics": "true",
                "--enable-continuous-cloudwatch-log": "true",
                # workers is a maximum: an hourly increment runs on fewer, a backfill on all of them
                "--enable-auto-scaling": "true",
                # The Spark UI of each run in the Glue console (stages, tasks, skew): event logs
                # encrypted by the security configuration, expired by the curated bucket's lifecycle.
                "--enable-spark-ui": "true",
                "--spark-event-logs-path": f"s3://{curated_bucket.bucket_name}/{curated_prefixes[4]}",
                "--dataset_spec": spec_json,
                "--raw_path": f"s3://{raw_bucket.bucket_name}/{ds}/",
                "--curated_path": f"s3://{curated_bucket.bucket_name}/{ds}/",
                "--quarantine_path": f"s3://{curated_bucket.bucket_name}/{dataset.quarantine_name}/",
                "--manifest_path": f"s3://{curated_bucket.bucket_name}/_manifests/{ds}/",
                "--target_file_size_mib": str(dataset.processing.target_file_size_mib),
                "--key_lookback_days": str(dataset.processing.key_lookback_days or "all"),
                # Days to rebuild though nothing new arrived; the state machine passes its input's.
                "--rebuild_days": "none",
                "--retention_days": str(dataset.governance.retention_days or "none"),
                "--curated_database": catalog.database,
                "--curated_table": catalog.table,
                "--quarantine_table": catalog.quarantine_table,
                "--metrics_namespace": METRICS_NAMESPACE,
                "--run_summary_path": f"s3://{curated_bucket.bucket_name}/{curated_prefixes[3]}",
            },
        )
        self.job.node.add_dependency(job_policy)

        # --- Crawler ----------------------------------------------------------------------------
        crawler_policy = iam.ManagedPolicy(
            self,
            "CrawlerPolicy",
            roles=[crawler_role],
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[curated_bucket.arn_for_objects(f"{p}*") for p in curated_prefixes[:2]],
                ),
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[curated_bucket.bucket_arn]),
                key_use_via("s3", [curated_key], ["kms:Decrypt"]),
                iam.PolicyStatement(
                    actions=[
                        "glue:GetDatabase",
                        "glue:GetTable",
                        "glue:GetPartition",
                        "glue:GetPartitions",
                        "glue:BatchGetPartition",
                        "glue:BatchCreatePartition",
                        "glue:CreatePartition",
                        "glue:UpdatePartition",
                        "glue:BatchUpdatePartition",
                    ],
                    resources=[self._catalog_arn(), self._database_arn(catalog.database), *table_arns],
                ),
                self._glue_logs_statement(),
                *self._lake_formation_statements(lake_formation),
            ],
        )
        acknowledge(
            crawler_policy,
            "The crawler reads objects with generated keys under the dataset's curated prefixes "
            "only, and writes its logs to the /aws-glue/ log groups Glue creates; with Lake "
            "Formation on it also calls lakeformation:GetDataAccess, which has no resource type.",
            *(
                f"AwsSolutions-IAM5[Resource::{rendered(self, r)}]"
                for r in (
                    *(curated_bucket.arn_for_objects(f"{p}*") for p in curated_prefixes[:2]),
                    self._glue_logs_arn(),
                    *(["*"] if lake_formation else []),
                )
            ),
        )
        self.crawler = glue.CfnCrawler(
            self,
            "Crawler",
            name=f"{name}-curated",
            description=f"Curated {ds}: new folders only; logs schema drift, never rewrites the declared tables",
            role=crawler_role.role_arn,
            database_name=catalog.database,
            crawler_security_configuration=security_configuration,
            # Crawl only folders that are new since the last crawl: incremental without the SQS
            # queue and S3 notifications that event mode needs (the job already registers its
            # partitions; the crawler catches partitions written by anything else, and drift).
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_NEW_FOLDERS_ONLY"),
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="LOG", delete_behavior="LOG"
            ),
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(
                        path=f"s3://{curated_bucket.bucket_name}/{p}", exclusions=["_*/**"]
                    )
                    for p in curated_prefixes[:2]
                ]
            ),
            configuration=json.dumps(
                {
                    "Version": 1.0,
                    "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
                    # One table per include path whatever the days' schemas: by default a crawler
                    # splits folders whose schemas differ enough (days curated before a column was
                    # added) into tables of their own (year_2026, ...), which its role may not
                    # create, instead of logging the drift.
                    # https://docs.aws.amazon.com/glue/latest/dg/crawler-grouping-policy.html
                    "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
                    # Glue's crawlers add partition indexes to S3 tables by default; the declared
                    # tables are not the crawler's to change, and its role may not index them.
                    # https://docs.aws.amazon.com/glue/latest/dg/crawler-configure-partition-indexes.html
                    "CreatePartitionIndex": False,
                }
            ),
            # Registered locations are read with credentials Lake Formation vends for its grants.
            lake_formation_configuration=glue.CfnCrawler.LakeFormationConfigurationProperty(
                use_lake_formation_credentials=True
            )
            if lake_formation
            else None,
        )
        self.crawler.node.add_dependency(crawler_policy)

        # --- Data quality -----------------------------------------------------------------------
        self.ruleset = glue.CfnDataQualityRuleset(
            self,
            "Ruleset",
            name=self.ruleset_name,
            description=f"Generated from {Path(dataset.source_file).name}: completeness, uniqueness, allowed values, ranges",
            ruleset=dqdl(dataset),
            target_table=glue.CfnDataQualityRuleset.DataQualityTargetTableProperty(
                database_name=catalog.database, table_name=catalog.table
            ),
        )

        # --- State machine ----------------------------------------------------------------------
        self.state_machine = self._state_machine(
            name,
            catalog,
            curated_bucket=curated_bucket,
            curated_key=curated_key,
            topic=alert_topic,
            notice_topic=notice_topic,
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        # Not "Schedule": a schedule cannot be moved into a group in place (CloudFormation's
        # handler looks for it in the new group, aws/aws-cdk#34216), so a deployment from before
        # the group gets this one created in it and the old one deleted.
        self.schedule = schedule_state_machine(
            self,
            "GroupedSchedule",
            name=f"{name}-pipeline",
            state_machine=self.state_machine,
            expression=dataset.processing.schedule,
            what=f"the {ds} pipeline",
            group=schedule_group,
        )
        self.alarms = self._alarms()
        self.failure_rules = self._failure_rules(alert_topic)

    # -- ARNs --------------------------------------------------------------------------------------

    def _catalog_arn(self) -> str:
        return Arn.format(
            {"service": "glue", "resource": "catalog", "arn_format": ArnFormat.NO_RESOURCE_NAME},
            Stack.of(self),
        )

    def _database_arn(self, database: str) -> str:
        return Stack.of(self).format_arn(service="glue", resource="database", resource_name=database)

    def _table_arn(self, database: str, table: str) -> str:
        return Stack.of(self).format_arn(
            service="glue", resource="table", resource_name=f"{database}/{table}"
        )

    def _ruleset_arn(self, ruleset: str) -> str:
        return Stack.of(self).format_arn(service="glue", resource="dataQualityRuleset", resource_name=ruleset)

    @staticmethod
    def _lake_formation_statements(lake_formation: bool) -> list[iam.PolicyStatement]:
        """Lake Formation vends data credentials through GetDataAccess (no resource-level scope)."""
        if not lake_formation:
            return []
        return [iam.PolicyStatement(actions=["lakeformation:GetDataAccess"], resources=["*"])]

    def _glue_logs_statement(self) -> iam.PolicyStatement:
        """Glue jobs and crawlers create and write their own log groups under /aws-glue/."""
        return iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:AssociateKmsKey",
            ],
            resources=[self._glue_logs_arn()],
        )

    def _glue_logs_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws-glue/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    # -- orchestration -----------------------------------------------------------------------------

    def _state_machine(
        self,
        name: str,
        catalog: CatalogTarget,
        *,
        curated_bucket: s3.IBucket,
        curated_key: kms.IKey,
        topic: sns.ITopic,
        notice_topic: sns.ITopic,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> sfn.StateMachine:
        ds = self.dataset.name
        stack = Stack.of(self)
        crawler_arn = stack.format_arn(service="glue", resource="crawler", resource_name=self.crawler.ref)
        graph = PipelineDefinition(
            self,
            PipelineTargets(
                dataset=self.dataset,
                job_name=self.job.ref,
                crawler_name=self.crawler.ref,
                job_role_arn=self.job_role.role_arn,
                ruleset_name=self.ruleset_name,
                ruleset_arn=self._ruleset_arn(self.ruleset_name),
                catalog=catalog,
                curated_bucket=curated_bucket,
            ),
            alert_topic=topic,
            notice_topic=notice_topic,
        )
        summaries_arn = graph.summaries_arn
        machine = logged_state_machine(
            self,
            ids="StateMachine",
            name=f"{name}-pipeline",
            description=f"Pipeline of {ds}: runs its job, crawler and data-quality checks, publishes alerts",
            definition=graph.definition,
            timeout=Duration.minutes(pipeline_timeout_minutes(self.dataset.processing)),
            statements=[
                # the notices (the alerts are logged_state_machine's); same key as the alerts
                iam.PolicyStatement(actions=["sns:Publish"], resources=[notice_topic.topic_arn]),
                iam.PolicyStatement(
                    actions=["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
                    resources=[stack.format_arn(service="glue", resource="job", resource_name=self.job.ref)],
                ),
                iam.PolicyStatement(
                    actions=["glue:StartCrawler"],
                    resources=[crawler_arn],
                ),
                iam.PolicyStatement(
                    actions=[
                        "glue:StartDataQualityRulesetEvaluationRun",
                        "glue:GetDataQualityResult",
                        "glue:GetDataQualityRuleset",
                    ],
                    resources=[self._ruleset_arn(self.ruleset_name)],
                ),
                # a run is asked for by its id alone: Glue's IAM page for data quality gives
                # ::dataQualityRuleset/* for the recommendation-run calls that take a run id (its
                # row for this call was not found), and a grant on the one ruleset was refused
                # this call in a public project's troubleshooting notes
                iam.PolicyStatement(
                    actions=["glue:GetDataQualityRulesetEvaluationRun"],
                    resources=[self._ruleset_arn("*")],
                ),
                iam.PolicyStatement(
                    actions=["glue:GetTable", "glue:GetDatabase"],
                    resources=[
                        self._catalog_arn(),
                        self._database_arn(catalog.database),
                        self._table_arn(catalog.database, catalog.table),
                    ],
                ),
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[self.job_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[summaries_arn],
                ),
                key_use_via("s3", [curated_key], ["kms:Decrypt"]),
            ],
            alert_topic=topic,
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        policy = machine.policy
        acknowledge(
            policy,
            "CloudWatch Logs vended delivery (state machine logging) and X-Ray tracing APIs support "
            "no resource-level permissions (Step Functions logging and tracing documentation). The "
            "run summaries are objects named by job run id under the dataset's own prefix. A "
            "data-quality evaluation run is read by its id alone, which Glue authorizes on "
            "dataQualityRuleset/* (as Glue Data Quality's IAM page gives for run-id calls).",
            "AwsSolutions-IAM5[Resource::*]",
            f"AwsSolutions-IAM5[Resource::{rendered(self, summaries_arn)}]",
            f"AwsSolutions-IAM5[Resource::{rendered(self, self._ruleset_arn('*'))}]",
        )
        return machine.state_machine

    def _alarms(self) -> list[cloudwatch.Alarm]:
        ds = self.dataset.name
        period = Duration.minutes(5)
        specs = [
            (
                cloudwatch.Metric(
                    namespace="Glue",
                    metric_name="glue.driver.aggregate.numFailedTasks",
                    dimensions_map={"JobName": self.job.ref, "JobRunId": "ALL", "Type": "count"},
                    statistic="Sum",
                    period=period,
                ),
                "JobFailedTasksAlarm",
                "the Glue job had failed Spark tasks",
            ),
            (
                # The job holds rows to the transform's rules, so in steady state it quarantines
                # none: a row it refuses came around or against the transform (a backfill or
                # replay, an object edited by hand, an event under another day's folder, a rule
                # tightened before a rebuild) and is missing from the curated table.
                self.metric_rows("RowsQuarantined"),
                "QuarantinedRowsAlarm",
                "the Glue job quarantined rows, which are not in the curated table (see the run "
                "summary's quarantine_days and the quarantine table's reasons)",
            ),
            (
                self.metric_rows("UnplacedObjects"),
                "UnplacedObjectsAlarm",
                "raw objects outside the year=/month=/day= folders of the dataset prefix are not curated "
                "(see the run summary)",
            ),
        ]
        stale = stale_after_hours(self.dataset.processing)
        return [
            *execution_alarms(self, self.state_machine, ids="Pipeline", subject=f"{ds}: a pipeline run"),
            *(
                [
                    alarm_without(
                        self,
                        "StaleAlarm",
                        self.state_machine.metric_succeeded(),
                        hours=stale,
                        description=f"{ds}: no pipeline run has succeeded for {stale} hours, so curated "
                        "data is that old: look for a disabled or deleted schedule, dropped starts "
                        "or failing runs (runbook)",
                    )
                ]
                if stale
                else []
            ),
            *(
                alarm_above(self, cid, metric, threshold=0, description=f"{ds}: {text}")
                for metric, cid, text in specs
            ),
        ]

    def _failure_rules(self, topic: sns.ITopic) -> list[events.CfnRule]:
        """Job and crawler failures and failed data-quality evaluations go to the alert topic as
        they happen. The crawler runs on after the state machine has started it, so its failure
        (drift no longer logged) reaches no state: only this rule reports it."""
        ds = self.dataset.name
        alerts = AlertRules(self, "AlertRules", topic=topic, key=self._logs_key)
        return [
            alerts.add(
                "JobFailedRule",
                description=f"{ds}: Glue job failures to the alert topic",
                pattern={
                    "source": ["aws.glue"],
                    "detail-type": ["Glue Job State Change"],
                    "detail": {"jobName": [self.job.ref], "state": ["FAILED", "TIMEOUT", "ERROR"]},
                },
                template=f'"Glue job of {ds} <state>: <message> (run <run>)"',
                paths={"state": "$.detail.state", "message": "$.detail.message", "run": "$.detail.jobRunId"},
            ),
            alerts.add(
                "CrawlerFailedRule",
                description=f"{ds}: curated crawler failures to the alert topic",
                pattern={
                    "source": ["aws.glue"],
                    "detail-type": ["Glue Crawler State Change"],
                    "detail": {"crawlerName": [self.crawler.ref], "state": ["Failed"]},
                },
                template=f'"Crawler of {ds} failed: <error> (log: <log>)"',
                paths={"error": "$.detail.errorMessage", "log": "$.detail.cloudWatchLogLink"},
            ),
            alerts.add(
                "DataQualityFailedRule",
                description=f"{ds}: failed data-quality evaluations to the alert topic",
                pattern={
                    "source": ["aws.glue-dataquality"],
                    "detail-type": ["Data Quality Evaluation Results Available"],
                    # the event lists the evaluated rulesets in ``detail.rulesetNames`` (Glue's
                    # data-quality alerts page); its ``context`` names the table and the run
                    "detail": {"rulesetNames": [self.ruleset_name], "state": ["FAILED"]},
                },
                # no count of failed rules: the page's sample event calls it ``rulesFailed`` and
                # its sample code ``numRulesFailed``; the run id finds the result in Glue
                template=f'"Data quality of {ds} failed: score <score> (evaluation run <run>)"',
                paths={"score": "$.detail.score", "run": "$.detail.context.runId"},
            ),
        ]

    def metric_rows(self, name: str) -> cloudwatch.Metric:
        """A count the job publishes per run, one of :data:`JOB_COUNTS`."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"dataset": self.dataset.name},
            statistic="Sum",
            period=Duration.hours(1),
        )
