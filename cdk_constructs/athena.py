"""Athena workgroups: engine v3, enforced settings, results encrypted with the lake's key."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_athena as athena
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


def sql_workgroup(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    description: str,
    results_bucket: s3.IBucket,
    key: kms.IKey,
    bytes_scanned_cutoff: int,
    removal_policy: RemovalPolicy,
) -> athena.CfnWorkGroup:
    """A SQL workgroup whose settings clients cannot override (results location, encryption, cutoff).

    Results go to ``s3://<results bucket>/<name>/`` encrypted with ``key`` (SSE-KMS), and only if
    this account owns that bucket (``ExpectedBucketOwner``: a bucket of the same name created by
    another account after a teardown gets no results); CloudWatch metrics are on so the dashboard
    and alarms see bytes scanned per workgroup.
    """
    workgroup = athena.CfnWorkGroup(
        scope,
        construct_id,
        name=name,
        description=description,
        state="ENABLED",
        recursive_delete_option=removal_policy == RemovalPolicy.DESTROY,
        work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
            enforce_work_group_configuration=True,
            publish_cloud_watch_metrics_enabled=True,
            bytes_scanned_cutoff_per_query=bytes_scanned_cutoff,
            requester_pays_enabled=False,
            engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                selected_engine_version="Athena engine version 3"
            ),
            result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                output_location=f"s3://{results_bucket.bucket_name}/{name}/",
                encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                    encryption_option="SSE_KMS", kms_key=key.key_arn
                ),
                expected_bucket_owner=Aws.ACCOUNT_ID,
            ),
        ),
    )
    workgroup.apply_removal_policy(removal_policy)
    return workgroup
