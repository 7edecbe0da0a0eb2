"""Foundation (stateful): keys, zone buckets, access-log bucket, alert topic, cost budget, schedule
group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_macie as macie
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from cdk_constructs.alerts import AlertRules, AlertTopic, CostBudget, WatchedCalls, alarm_above
from cdk_constructs.audit import AuditTrail, IamChanges, TrailCheck
from cdk_constructs.bootstrap import (
    ASSET_WRITES,
    assets_bucket_name,
    execution_role_arn,
    file_publishing_role_arn,
)
from cdk_constructs.functions import powertools_layer
from cdk_constructs.glue_logs import GlueLogRetention
from cdk_constructs.keys import LakeKeys
from cdk_constructs.lake_formation import CHANGES
from cdk_constructs.macie import ResultsRepository, allow_macie_to_decrypt, allow_macie_to_store_results
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from stacks.common import log_retention, removal_policy


class FoundationStack(Stack):
    """Everything that holds data or keys, and the account-level switches that guard them.

    With Macie on, the Macie session is created here (unless the stage reuses the account's)
    because the zone keys' policies name Macie's service-linked role, which the session creates.
    With CloudTrail on, the trail lives here too: it writes into the logs bucket and logs key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        raw_expirations: Mapping[str, Duration] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = removal_policy(stage)
        self.keys = LakeKeys(self, "Keys", prefix=stage.prefix, removal_policy=removal)
        features = stage.features
        self.macie_session: macie.CfnSession | None = None
        if features.macie:
            if not features.macie_reuse_session:
                self.macie_session = macie.CfnSession(
                    self, "MacieSession", status="ENABLED", finding_publishing_frequency="FIFTEEN_MINUTES"
                )
            for key in (self.keys.raw, self.keys.curated):
                allow_macie_to_decrypt(key)
                if self.macie_session is not None:
                    key.node.add_dependency(self.macie_session)
        lc = stage.lifecycle
        self.storage = LakeStorage(
            self,
            "Storage",
            prefix=stage.prefix,
            raw_key=self.keys.raw,
            curated_key=self.keys.curated,
            analytics_key=self.keys.analytics,
            raw_infrequent_access_after=Duration.days(lc.raw_infrequent_access_after),
            raw_glacier_ir_after=Duration.days(lc.raw_glacier_ir_after),
            noncurrent_version_expiration=Duration.days(lc.noncurrent_versions_expire_after),
            athena_results_expire_after=Duration.days(lc.athena_results_expire_after),
            access_logs_expire_after=Duration.days(lc.access_logs_expire_after),
            audit=features.cloudtrail,
            audit_logs_expire_after=Duration.days(lc.audit_logs_expire_after),
            macie_results_key=self.keys.logs if self.macie_session is not None else None,
            audit_logs_locked_for=Duration.days(lc.audit_logs_locked_for)
            if lc.audit_logs_locked_for
            else None,
            raw_expirations=raw_expirations,
            removal_policy=removal,
        )
        # Where this app enabled Macie, it keeps Macie's discovery results in a bucket of their own
        # (the governance stack points Macie there), encrypted with the logs key.
        self.macie_results: ResultsRepository | None = None
        if self.storage.macie_results is not None:
            allow_macie_to_store_results(self.storage.macie_results.bucket, self.keys.logs)
            results_name = self.storage.macie_results.physical_name
            assert results_name is not None  # the lake names every bucket
            self.macie_results = ResultsRepository(bucket_name=results_name, key_arn=self.keys.logs.key_arn)
        self.alerts = AlertTopic(
            self,
            "Alerts",
            master_key=self.keys.logs,
            display_name=f"{stage.prefix} data lake alerts",
            email=stage.alarm_email,
        )
        self.budget: CostBudget | None = None
        if stage.monthly_budget_usd is not None:
            self.budget = CostBudget(
                self,
                "CostBudget",
                name=f"{stage.prefix}-monthly-cost",
                limit_usd=stage.monthly_budget_usd,
                alerts=self.alerts,
            )
        # Runs that succeeded are news, not alerts: an hourly pipeline reports one an hour, which
        # would bury the alerts of whoever is on call. The pipelines' roles publish here, and with
        # Redshift on the EventBridge rule that hears a warehouse refresh finish.
        self.notices = AlertTopic(
            self,
            "Notices",
            master_key=self.keys.logs,
            display_name=f"{stage.prefix} data lake pipeline notices",
            email=stage.notice_email,
            event_rules=stage.features.redshift,
        )
        # Every schedule of the lake (pipelines, reports) is in this group, so that a start the
        # scheduler gave up on (its retries spent: a broken role, a deleted state machine) alarms;
        # the execution never existing, nothing else would.
        self.schedules = scheduler.ScheduleGroup(
            self, "Schedules", schedule_group_name=stage.prefix, removal_policy=removal
        )
        self.dropped_starts_alarm = alarm_above(
            self,
            "DroppedSchedulesAlarm",
            self.schedules.metric_dropped(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            description=f"{stage.prefix}: a schedule could not start its pipeline, report, trail "
            "check or warehouse refresh (EventBridge Scheduler dropped the invocation after its retries)",
        )
        self.alerts.notify_on(self.dropped_starts_alarm)
        # The CDK bootstrap's bucket, from which Glue reads the jobs' scripts at every run: an object
        # overwritten there changes what a job runs (as a role that reads raw PII) with no call to
        # Glue, and one a later deployment finds there is what it deploys. Deployments publish
        # there as the bootstrap's file-publishing role; any other write alerts (below).
        self.deployment_assets = s3.Bucket.from_bucket_name(
            self, "DeploymentAssets", assets_bucket_name(self)
        )
        self.trail: AuditTrail | None = None
        self.trail_check: TrailCheck | None = None
        self.iam_changes: IamChanges | None = None
        if self.storage.audit is not None:
            self.trail = AuditTrail(
                self,
                "Audit",
                name=f"{stage.prefix}-audit",
                bucket=self.storage.audit.bucket,
                key=self.keys.logs,
                data_buckets=[
                    b.bucket for b in (self.storage.raw, self.storage.curated, self.storage.analytics)
                ],
                written_buckets=[self.deployment_assets],
                log_retention=log_retention(stage),
                removal_policy=removal,
            )
            self.trail_check = TrailCheck(
                self,
                "AuditCheck",
                trail=self.trail,
                schedule_group=self.schedules.schedule_group_name,
                powertools_layer=powertools_layer(self, "PowertoolsLayer", stage.powertools_version),
                logs_key=self.keys.logs,
                log_retention=log_retention(stage),
                removal_policy=removal,
            )
            self.trail_check.schedule.node.add_dependency(self.schedules)
            self.alerts.notify_on(self.trail_check.alarm)
            self.iam_changes = IamChanges(
                self, "IamChanges", trail=self.trail, prefix=stage.prefix, deployer=execution_role_arn(self)
            )
            self.alerts.notify_on(self.iam_changes.alarm)
        # Governance changes that are not faults of any run: published as they happen.
        self.governance_alerts = AlertRules(
            self, "GovernanceAlerts", topic=self.alerts.topic, key=self.keys.logs
        )
        for watched in self._watched_calls(
            prefix=stage.prefix, lake_formation=features.lake_formation, redshift=features.redshift
        ):
            self.governance_alerts.watch(watched, deployer=execution_role_arn(self))
        self.governance_alerts.watch(
            WatchedCalls(
                "DeploymentAssetWrittenRule",
                "CDK assets bucket",
                "s3",
                ASSET_WRITES,
                "bucketName",
                (self.deployment_assets.bucket_name,),
                outside_deployments=True,
                summary="object written, deleted or its ACL changed (Glue reads the jobs' scripts "
                "there at every run)",
                item="key",
            ),
            deployer=execution_role_arn(self),
            expected=[file_publishing_role_arn(self)],
        )
        # Glue creates the log groups of the jobs and crawlers itself: without this, they would
        # keep their logs (a failed row's values among them) forever.
        self.glue_log_retention = GlueLogRetention(
            self,
            "GlueLogRetention",
            prefix=stage.prefix,
            retention_days=stage.log_retention_days,
            rules=self.governance_alerts,
            alerts=self.alerts,
            logs_key=self.keys.logs,
            log_retention=log_retention(stage),
            removal_policy=removal,
        )

    def _watched_calls(self, *, prefix: str, lake_formation: bool, redshift: bool) -> list[WatchedCalls]:
        """A lake key disabled or scheduled for deletion (CloudFormation's own destroy included):
        every object of its zone becomes unreadable then, or when the waiting period ends. The
        lake's trail stopped or deleted: the audit of who read what ends there. Each call names
        its key by id or ARN (the API takes no alias for either), its trail by name or ARN.

        Outside a deployment (by anyone but the CDK execution role, which makes every change this
        app declares): a lake bucket's policy, ACL, public access block, encryption, versioning,
        lifecycle, object ownership, replication, Object Lock or access logging changed, which can
        open the bucket, stop encrypting, expire or copy its objects; a lake key's policy replaced
        (which can let another principal or account decrypt a zone), its rotation turned off, or a
        grant on it created by a person (not a service on a caller's behalf); the trail's settings
        or event selectors changed, which can end the audit while the trail still logs; a
        pipeline's or report's Glue job, crawler, data-quality ruleset or state machine updated or
        deleted (a job's script runs as a role that reads raw PII; a weakened ruleset passes bad
        data); a lake Firehose stream's destination, transform or encryption changed or the stream
        deleted, a source stream's encryption stopped, the stream deleted or opened by a resource
        policy, a lake function's code, configuration or permissions changed or the function
        deleted (the transform sees every record); a lake Athena workgroup's settings changed or
        the workgroup deleted (results unencrypted or elsewhere, settings no longer enforced over
        a client's); with Redshift on, the warehouse's workgroup or namespace changed or deleted
        (made publicly accessible, its key or roles changed); and, with Lake Formation on, a
        change to its permissions, tags, filters, settings or registrations, which can open PII.
        Lake Formation's admins and settings are the account's, so in an account that other teams'
        Lake Formation shares, their changes alert too."""
        keys = [*self.keys.zone_keys.values(), self.keys.logs]
        storage = self.storage
        buckets = (
            storage.raw,
            storage.curated,
            storage.analytics,
            storage.athena_results,
            storage.access_logs,
            *((storage.audit,) if storage.audit is not None else ()),
            *((storage.macie_results,) if storage.macie_results is not None else ()),
        )
        watched = [
            WatchedCalls(
                "KeyDisabledOrDeletedRule",
                "Lake KMS key",
                "kms",
                ("DisableKey", "ScheduleKeyDeletion"),
                "keyId",
                (*(k.key_id for k in keys), *(k.key_arn for k in keys)),
            ),
            WatchedCalls(
                "KeyPolicyChangedRule",
                "Lake KMS key",
                "kms",
                ("PutKeyPolicy", "DisableKeyRotation"),
                "keyId",
                (*(k.key_id for k in keys), *(k.key_arn for k in keys)),
                outside_deployments=True,
                summary="key policy replaced or rotation turned off",
            ),
            # A grant lets its grantee (another account's principal too) use the key, with no
            # change to its policy. Services create grants on the keys they encrypt with, on a
            # caller's behalf: only a person's count. CreateGrant names a key by id or ARN.
            WatchedCalls(
                "KeyGrantCreatedRule",
                "Lake KMS key",
                "kms",
                ("CreateGrant",),
                "keyId",
                (*(k.key_id for k in keys), *(k.key_arn for k in keys)),
                outside_deployments=True,
                by_people=True,
                summary="grant created by a person",
            ),
            WatchedCalls(
                "BucketGuardChangedRule",
                "Lake bucket",
                "s3",
                BUCKET_GUARDS,
                "bucketName",
                tuple(b.bucket.bucket_name for b in buckets),
                outside_deployments=True,
                summary="policy, ACL, public access, encryption, versioning, lifecycle, ownership, replication, "
                "Object Lock or access logging changed",
            ),
        ]
        if self.trail is not None:
            names = (self.trail.name, self.trail.trail.trail_arn)
            watched += [
                WatchedCalls(
                    "TrailStoppedOrDeletedRule",
                    "Lake audit trail",
                    "cloudtrail",
                    ("StopLogging", "DeleteTrail"),
                    "name",
                    names,
                ),
                WatchedCalls(
                    "TrailChangedRule",
                    "Lake audit trail",
                    "cloudtrail",
                    ("UpdateTrail",),
                    "name",
                    names,
                    outside_deployments=True,
                    summary="bucket, key, log file validation, regions or CloudWatch Logs changed",
                ),
                # Which events the trail logs: with the S3 data events gone (or management events
                # excluded) it still logs and delivers, while the audit of reads has ended.
                WatchedCalls(
                    "TrailSelectorsChangedRule",
                    "Lake audit trail",
                    "cloudtrail",
                    ("PutEventSelectors",),
                    "trailName",
                    names,
                    outside_deployments=True,
                    summary="event selectors changed (which management and data events it logs)",
                ),
            ]
        # Every pipeline's and report's Glue job, crawler, data-quality ruleset and state machine,
        # stream, function and workgroup, by the stage's name prefix: one rule per kind for the
        # stage, whatever its number of datasets.
        stage_names = ({"prefix": f"{prefix}-"},)
        stream_arns = (
            {"prefix": f"arn:{Aws.PARTITION}:kinesis:{Aws.REGION}:{Aws.ACCOUNT_ID}:stream/{prefix}-"},
        )
        watched += [
            WatchedCalls(
                "GlueJobChangedRule",
                "Lake Glue job",
                "glue",
                ("UpdateJob", "DeleteJob"),
                "jobName",
                stage_names,
                outside_deployments=True,
                summary="updated or deleted (its script, role or arguments)",
            ),
            WatchedCalls(
                "GlueCrawlerOrRulesetChangedRule",
                "Lake crawler or data-quality ruleset",
                "glue",
                ("UpdateCrawler", "DeleteCrawler", "UpdateDataQualityRuleset", "DeleteDataQualityRuleset"),
                "name",
                stage_names,
                outside_deployments=True,
                summary="updated or deleted",
            ),
            WatchedCalls(
                "StateMachineChangedRule",
                "Lake state machine",
                "states",
                ("UpdateStateMachine", "DeleteStateMachine"),
                "stateMachineArn",
                (
                    {
                        "prefix": f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{prefix}-"
                    },
                ),
                outside_deployments=True,
                summary="updated or deleted",
            ),
            # What reaches the raw zone: a stream's destination (another bucket), its transform, its
            # encryption; the functions' code and settings (the transform sees every record).
            WatchedCalls(
                "DeliveryStreamChangedRule",
                "Lake Firehose stream",
                "firehose",
                ("UpdateDestination", "DeleteDeliveryStream", "StopDeliveryStreamEncryption"),
                "deliveryStreamName",
                stage_names,
                outside_deployments=True,
                summary="destination, transform or encryption changed, or deleted",
            ),
            # A source stream (Kinesis-source datasets) decrypted, deleted or opened to another
            # account by a resource policy; a call names the stream by name or by ARN.
            WatchedCalls(
                "SourceStreamChangedRule",
                "Lake Kinesis stream",
                "kinesis",
                ("StopStreamEncryption", "DeleteStream", "PutResourcePolicy"),
                "streamName",
                stage_names,
                outside_deployments=True,
                summary="encryption stopped, deleted, or a resource policy put on it",
                also=(
                    ("streamARN", stream_arns),
                    ("resourceARN", stream_arns),
                ),
            ),
            WatchedCalls(
                "FunctionChangedRule",
                "Lake Lambda function",
                "lambda",
                (
                    {"prefix": "UpdateFunctionCode"},
                    {"prefix": "UpdateFunctionConfiguration"},
                    {"prefix": "DeleteFunction"},
                    {"prefix": "AddPermission"},
                ),
                "functionName",
                (
                    *stage_names,
                    {
                        "prefix": f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{Aws.ACCOUNT_ID}:function:{prefix}-"
                    },
                ),
                outside_deployments=True,
                summary="code, configuration or invoke permissions changed, or deleted",
            ),
            # What every query in a workgroup must do: results encrypted where the workgroup says,
            # the settings enforced over a client's, the scan cutoff.
            WatchedCalls(
                "AthenaWorkgroupChangedRule",
                "Lake Athena workgroup",
                "athena",
                ("UpdateWorkGroup", "DeleteWorkGroup"),
                "workGroup",
                stage_names,
                outside_deployments=True,
                summary="settings changed (results location and encryption, enforcement, scan cutoff) or deleted",
            ),
        ]
        if redshift:
            # A workgroup made publicly accessible or moved to other subnets or security groups, a
            # namespace's key, admin or roles changed, or either deleted.
            watched += [
                WatchedCalls(
                    "RedshiftWorkgroupChangedRule",
                    "Lake Redshift workgroup",
                    "redshift-serverless",
                    ("UpdateWorkgroup", "DeleteWorkgroup"),
                    "workgroupName",
                    stage_names,
                    outside_deployments=True,
                    summary="network access, capacity or settings changed, or deleted",
                ),
                WatchedCalls(
                    "RedshiftNamespaceChangedRule",
                    "Lake Redshift namespace",
                    "redshift-serverless",
                    ("UpdateNamespace", "DeleteNamespace"),
                    "namespaceName",
                    stage_names,
                    outside_deployments=True,
                    summary="key, admin, roles or logging changed, or deleted",
                ),
            ]
        if lake_formation:
            watched.append(
                WatchedCalls(
                    "LakeFormationChangedRule",
                    "Lake Formation",
                    "lakeformation",
                    CHANGES,
                    outside_deployments=True,
                    summary="permissions, tags, filters, settings or registrations changed",
                )
            )
        return watched


#: Bucket settings whose change can open a bucket, stop encrypting, expire or copy its objects
#: (CloudTrail's event names: the lifecycle call is PutBucketLifecycle).
BUCKET_GUARDS = (
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "PutBucketAcl",
    "PutBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock",
    "PutBucketEncryption",
    "DeleteBucketEncryption",
    "PutBucketVersioning",
    "PutBucketLifecycle",
    "DeleteBucketLifecycle",
    "PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls",
    "PutBucketReplication",
    "PutObjectLockConfiguration",
    # Server access logging turned off or sent elsewhere: the record of the bucket's reads the
    # trail's data events leave out (the Athena results', the audit bucket's).
    "PutBucketLogging",
)
