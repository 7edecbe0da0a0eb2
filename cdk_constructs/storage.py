"""Secure S3 buckets for the lake zones, query results and server access logs."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.nag import acknowledge_regulatory


class LakeBucket(Construct):
    """An S3 bucket with the lake's secure defaults, beyond the L2's own.

    Always: all public access blocked, TLS only, object ownership enforced (no ACLs), versioning,
    incomplete multipart uploads aborted after one day and noncurrent versions expired.

    :param encryption_key: customer-managed key for SSE-KMS with a bucket key. ``None`` means
        SSE-S3, which only the server-access-log bucket uses: S3 cannot deliver access logs to an
        SSE-KMS bucket (https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html).
    :param server_access_logs_bucket: where S3 writes this bucket's access logs. ``None`` only for
        the access-log bucket itself.
    :param server_access_logs_prefix: key prefix of this bucket's access logs. Default: the
        construct id followed by ``/``.
    :param lifecycle_rules: extra lifecycle rules (transitions, expirations).
    :param noncurrent_version_expiration: age at which noncurrent versions expire. Default: 30 days.
    :param event_bridge_enabled: send object events to EventBridge. Default: ``False``.
    :param removal_policy: ``RETAIN`` (default) or ``DESTROY``; ``DESTROY`` also empties the
        bucket on ``cdk destroy``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        encryption_key: kms.IKey | None,
        server_access_logs_bucket: s3.IBucket | None,
        server_access_logs_prefix: str | None = None,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        noncurrent_version_expiration: Duration | None = None,
        event_bridge_enabled: bool = False,
        removal_policy: RemovalPolicy | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if removal_policy is None:
            removal_policy = RemovalPolicy.RETAIN
        if noncurrent_version_expiration is None:
            noncurrent_version_expiration = Duration.days(30)
        if server_access_logs_prefix is None:
            server_access_logs_prefix = f"{construct_id}/"
        destroy = removal_policy == RemovalPolicy.DESTROY
        if not destroy and removal_policy != RemovalPolicy.RETAIN:
            Annotations.of(self).add_warning_v2(
                "lake:removal",
                f"{removal_policy} is not supported for lake buckets; the bucket is retained",
            )
            removal_policy = RemovalPolicy.RETAIN
        self.encryption_key = encryption_key
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS if encryption_key is not None else s3.BucketEncryption.S3_MANAGED,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption_key is not None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=server_access_logs_bucket,
            server_access_logs_prefix=server_access_logs_prefix if server_access_logs_bucket else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteUploadsAndExpireNoncurrent",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                    noncurrent_version_expiration=noncurrent_version_expiration,
                    expired_object_delete_marker=True,
                ),
                *lifecycle_rules,
            ],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )
        if event_bridge_enabled:
            # The native CloudFormation property, not the L2 flag: the L2 adds a custom-resource
            # Lambda (BucketNotificationsHandler) to do what CloudFormation does by itself.
            cfn_bucket = self.bucket.node.default_child
            cfn_bucket.add_property_override(  # type: ignore[union-attr]
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
            )
        acknowledge_regulatory(
            self.bucket,
            "S3BucketReplicationEnabled",
            "Versioning, retained buckets and keys protect the data in-region; cross-region "
            "replication needs a destination bucket and key in a second region, which is each "
            "adopter's disaster-recovery decision (docs/design-decisions.md).",
        )
        if encryption_key is None:
            acknowledge_regulatory(
                self.bucket,
                "S3DefaultEncryptionKMS",
                "Server access log target buckets support SSE-S3 only; S3 cannot deliver access "
                "logs to an SSE-KMS bucket. The bucket holds access logs, never lake data.",
            )

    @property
    def bucket_name(self) -> str:
        return self.bucket.bucket_name

    @property
    def bucket_arn(self) -> str:
        return self.bucket.bucket_arn

    def arn_for_objects(self, key_pattern: str) -> str:
        return self.bucket.arn_for_objects(key_pattern)

    def grant_read(self, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Read objects (and decrypt them with the bucket's key)."""
        return self.bucket.grant_read(grantee, objects_key_pattern)

    def grant_write(self, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Write objects (and encrypt them with the bucket's key); no delete."""
        return self.bucket.grant_put(grantee, objects_key_pattern)

    def grant_read_write(self, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Read, write and delete objects, as a job that overwrites partitions must."""
        return self.bucket.grant_read_write(grantee, objects_key_pattern)


class LakeStorage(Construct):
    """The lake's buckets: raw, curated and analytics zones, Athena query results, access logs.

    :param keys: per-zone keys; the results bucket uses the analytics key.
    :param raw_infrequent_access_after: raw objects move to Standard-IA after this. Default: 30 days.
    :param raw_glacier_ir_after: raw objects move to Glacier Instant Retrieval. Default: 90 days.
    :param noncurrent_version_expiration: noncurrent versions expire. Default: 30 days.
    :param athena_results_expire_after: query results expire. Default: 30 days.
    :param access_logs_expire_after: access logs expire. Default: 365 days.
    :param removal_policy: ``RETAIN`` (default) or ``DESTROY`` (buckets emptied).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        raw_key: kms.IKey,
        curated_key: kms.IKey,
        analytics_key: kms.IKey,
        raw_infrequent_access_after: Duration | None = None,
        raw_glacier_ir_after: Duration | None = None,
        noncurrent_version_expiration: Duration | None = None,
        athena_results_expire_after: Duration | None = None,
        access_logs_expire_after: Duration | None = None,
        removal_policy: RemovalPolicy | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if raw_infrequent_access_after is None:
            raw_infrequent_access_after = Duration.days(30)
        if raw_glacier_ir_after is None:
            raw_glacier_ir_after = Duration.days(90)
        if athena_results_expire_after is None:
            athena_results_expire_after = Duration.days(30)
        if access_logs_expire_after is None:
            access_logs_expire_after = Duration.days(365)
        common = {"noncurrent_version_expiration": noncurrent_version_expiration, "removal_policy": removal_policy}
        self.access_logs = LakeBucket(
            self,
            "AccessLogs",
            encryption_key=None,
            server_access_logs_bucket=None,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=access_logs_expire_after)],
            **common,  # type: ignore[arg-type]
        )
        logs_bucket = self.access_logs.bucket
        self.raw = LakeBucket(
            self,
            "Raw",
            encryption_key=raw_key,
            server_access_logs_bucket=logs_bucket,
            event_bridge_enabled=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="TierRawData",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=raw_infrequent_access_after,
                        ),
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=raw_glacier_ir_after,
                        ),
                    ],
                )
            ],
            **common,  # type: ignore[arg-type]
        )
        self.curated = LakeBucket(
            self,
            "Curated",
            encryption_key=curated_key,
            server_access_logs_bucket=logs_bucket,
            event_bridge_enabled=True,
            **common,  # type: ignore[arg-type]
        )
        self.analytics = LakeBucket(
            self,
            "Analytics",
            encryption_key=analytics_key,
            server_access_logs_bucket=logs_bucket,
            **common,  # type: ignore[arg-type]
        )
        self.athena_results = LakeBucket(
            self,
            "AthenaResults",
            encryption_key=analytics_key,
            server_access_logs_bucket=logs_bucket,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireQueryResults", expiration=athena_results_expire_after)],
            **common,  # type: ignore[arg-type]
        )
