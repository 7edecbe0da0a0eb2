"""Processing: per dataset a Glue job, crawler, data-quality ruleset, state machine and schedule."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from constructs import Construct

from cdk_constructs.alerts import AlertTopic
from cdk_constructs.keys import LakeKeys
from cdk_constructs.nag import acknowledge
from cdk_constructs.personas import Personas
from cdk_constructs.pipeline_definition import CatalogTarget
from cdk_constructs.processing import DatasetPipeline, JobScripts
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from datalake.dataset import Dataset
from stacks.catalog import CatalogStack
from stacks.common import dataset_stack, log_retention, removal_policy


class ProcessingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        datasets: tuple[Dataset, ...],
        keys: LakeKeys,
        storage: LakeStorage,
        alerts: AlertTopic,
        notices: AlertTopic,
        schedule_group: str,
        catalog: CatalogStack,
        personas: Personas,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Used by every crawler and job: S3 writes, CloudWatch logs and job bookmarks encrypted.
        self.security_configuration = glue.CfnSecurityConfiguration(
            self,
            "SecurityConfiguration",
            name=f"{stage.prefix}-lake",
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                s3_encryptions=[
                    glue.CfnSecurityConfiguration.S3EncryptionProperty(
                        s3_encryption_mode="SSE-KMS", kms_key_arn=keys.curated.key_arn
                    )
                ],
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=keys.logs.key_arn
                ),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=keys.curated.key_arn
                ),
            ),
        )
        scripts = JobScripts.create(self)
        raw = storage.raw.reference(self, "RawBucket")
        curated = storage.curated.reference(self, "CuratedBucket")
        topic = alerts.reference(self, "AlertTopic")
        notice_topic = notices.reference(self, "NoticeTopic")
        self.pipelines: dict[str, DatasetPipeline] = {}
        for ds in datasets:
            tables = catalog.curated_tables[ds.name]
            # A nested stack per dataset: this stack holds one resource for each, so the stage's
            # datasets are not capped by CloudFormation's 500 resources a stack (stacks.common).
            nested = dataset_stack(self, ds, "Glue job, crawler, data quality, state machine and schedule")
            # by name: a Glue job's and crawler's reference to their configuration
            nested.node.add_dependency(self.security_configuration)
            roles = personas.pipelines[ds.name].reference(nested)
            pipeline = DatasetPipeline(
                nested,
                ds.construct_id,
                dataset=ds,
                name=f"{stage.prefix}-{ds.resource_name}",
                scripts=scripts,
                raw_bucket=raw,
                raw_key=keys.raw,
                curated_bucket=curated,
                curated_key=keys.curated,
                logs_key=keys.logs,
                catalog=CatalogTarget(
                    database=catalog.curated_database_name,
                    table=tables.table_name,
                    quarantine_table=tables.quarantine_table_name,
                ),
                security_configuration=self.security_configuration.name,
                alert_topic=topic,
                notice_topic=notice_topic,
                job_role=roles.job,
                crawler_role=roles.crawler,
                lake_formation=stage.features.lake_formation,
                schedule_group=schedule_group,
                log_retention=log_retention(stage),
                removal_policy=removal_policy(stage),
            )
            alerts.notify_on(*pipeline.alarms)
            for resource in (pipeline.job, pipeline.crawler):
                acknowledge(
                    resource,
                    f"Its security configuration, {self.security_configuration.name}, is this stack's, "
                    "outside the dataset's nested stack where the rule looks: it encrypts S3 writes and "
                    "CloudWatch Logs with SSE-KMS and job bookmarks with CSE-KMS (tests/test_processing_stack.py).",
                    "AwsSolutions-GL1",
                    *(["AwsSolutions-GL3"] if resource is pipeline.job else []),
                )
            self.pipelines[ds.name] = pipeline
