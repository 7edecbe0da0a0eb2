"""Firehose delivery of one dataset into the raw zone: Lambda transform, dynamic partitioning."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy, Size, Stack, Stage, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.functions import PYTHON_RUNTIME
from cdk_constructs.keys import key_use_via
from cdk_constructs.nag import acknowledge, acknowledge_regulatory, rendered
from datalake.dataset import DATASET_TAG, Dataset

TRANSFORM_CODE = Path(__file__).resolve().parent.parent / "lambda" / "firehose_transform"
#: The dataset's spec, beside the transform's modules in its deployment package (``handler.py``
#: reads it from there).
SPEC_FILE = "dataset_spec.json"
#: Namespace and service of the transform's EMF metrics (Powertools adds ``service`` as a dimension).
METRICS_NAMESPACE = "DataLake/Ingestion"
TRANSFORM_SERVICE = "firehose-transform"
#: A producer's credentials from its role last an hour; the SDKs assume it again before then.
PRODUCER_SESSION = Duration.hours(1)


def stage_transform(dataset: Dataset, root: Path) -> Path:
    """A folder under ``root`` holding the transform's modules and ``dataset``'s spec
    (:data:`SPEC_FILE`): the function's deployment package. The spec travels with the code, not in
    the function's environment, which Lambda caps at 4 KB in all: a dataset of some 60 columns has
    a longer one.

    Made once per content (the construct's ``root`` is the assembly's folder, whose ``asset.*``
    copy CDK packages); a folder made by another process first is used as it is."""
    modules = sorted(TRANSFORM_CODE.glob("*.py"))
    spec = dataset.to_spec_json().encode()
    digest = hashlib.sha256(spec)
    for module in modules:
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    staged = root / ".transform" / digest.hexdigest()[:32]
    if not staged.exists():
        staged.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=staged.parent))
        for module in modules:
            shutil.copy(module, building / module.name)  # with its mode, as a source folder is
        (building / SPEC_FILE).write_bytes(spec)
        (building / SPEC_FILE).chmod(0o644)  # Lambda's runtime user reads the package
        building.chmod(0o755)
        try:
            building.rename(staged)
        except OSError:  # staged meanwhile by another synth: same content
            shutil.rmtree(building)
    return staged


def producer_principal(principal: str) -> iam.IPrincipal:
    """A principal a producer role trusts, from a stage's ``producers`` entry (checked there): an
    account id, an account's root ARN, or a role's ARN."""
    if principal.isdigit():
        return iam.AccountPrincipal(principal)
    return iam.ArnPrincipal(principal)


def raw_prefix(dataset: Dataset) -> str:
    """Where the dataset's valid records land: ``<dataset>/year=YYYY/month=MM/day=DD/hour=HH/``."""
    return f"{dataset.name}/"


def rejected_prefix(dataset: Dataset) -> str:
    """Where records that failed validation land, with their reasons (ingest-time partitions)."""
    return f"{dataset.name}_rejected/"


def error_prefix(dataset: Dataset) -> str:
    """Firehose's own failures, by error type, so processing and partitioning failures stay apart."""
    return f"errors/{dataset.name}/"


def raw_expirations(datasets: Iterable[Dataset], rejected_expire_after_days: int) -> dict[str, Duration]:
    """The raw-zone prefixes S3 expires, with the age each expires at (counted from an object's
    upload, which is its records' arrival).

    Each dataset's rejections (records refused by contract, PII whole) after the stage's
    ``lifecycle.rejected_expire_after``, or the dataset's ``governance.retention_days`` if that is
    shorter; with a retention, Firehose's error records too (valid records that failed on the way,
    otherwise kept until replayed): one that arrived that long ago holds an event at least as old
    (unless its producer's clock ran ahead), which the job would remove as soon as it was
    replayed. The accepted records' days are removed by the job, by event day
    (``glue_jobs/raw_to_curated/job.py``)."""
    expiring: dict[str, Duration] = {}
    for dataset in datasets:
        retention = dataset.governance.retention_days
        rejected = (
            rejected_expire_after_days if retention is None else min(rejected_expire_after_days, retention)
        )
        expiring[rejected_prefix(dataset)] = Duration.days(rejected)
        if retention is not None:
            expiring[error_prefix(dataset)] = Duration.days(retention)
    return expiring


class DatasetDeliveryStream(Construct):
    """A Firehose stream for one dataset, with its transform function, into the raw zone.

    Records are validated and normalized by ``lambda/firehose_transform`` against the dataset file
    (its spec in the deployment package: :func:`stage_transform`), partitioned on
    ``year/month/day/hour`` of the event time in UTC with keys from the transform, GZIP-compressed
    and encrypted with the raw-zone key.

    :param dataset: the dataset model (buffering and source come from its ``ingestion`` section).
    :param name: physical name of the delivery stream.
    :param raw_bucket: destination bucket; :param raw_key: its key (also encrypts the stream).
    :param logs_key: encrypts the function's and Firehose's log groups.
    :param log_retention: retention of both log groups.
    :param powertools_layer: the public Powertools layer (:func:`~cdk_constructs.functions.powertools_layer`).
    :param removal_policy: for the log groups and the optional Kinesis stream. Default: ``RETAIN``.
    :param producers: who may assume the producer role (``<name>-producer``), the one way in: it may
        put records into the stream the dataset's producers write to (the delivery stream, or its
        Kinesis source) and nothing else. Default: principals of this account that their IAM
        policies allow to assume it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        name: str,
        raw_bucket: s3.IBucket,
        raw_key: kms.IKey,
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        powertools_layer: lambda_.ILayerVersion,
        removal_policy: RemovalPolicy | None = None,
        producers: Sequence[iam.IPrincipal] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        Tags.of(self).add(DATASET_TAG, dataset.name)
        if removal_policy is None:
            removal_policy = RemovalPolicy.RETAIN
        self.dataset = dataset
        self.delivery_stream_name = name
        function_logs = logs.LogGroup(
            self,
            "TransformLogs",
            encryption_key=logs_key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        # Roles with customer-managed policies written out in full: the L2 defaults would attach
        # AWSLambdaBasicExecutionRole and inline policies with wildcard actions.
        transform_role = iam.Role(
            self,
            "TransformRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Firehose transform of {dataset.name}: writes its logs and traces, nothing else",
        )
        transform_policy = iam.ManagedPolicy(
            self,
            "TransformPolicy",
            roles=[transform_role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[function_logs.log_group_arn],
                ),
                iam.PolicyStatement(
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]
                ),
            ],
        )
        acknowledge(
            transform_policy,
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions "
            "(https://docs.aws.amazon.com/xray/latest/devguide/security_iam_service-with-iam.html).",
            "AwsSolutions-IAM5[Resource::*]",
        )
        self.function = lambda_.Function(
            self,
            "Transform",
            description=f"Validates and partitions {dataset.name} records for Firehose",
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(stage_transform(dataset, self._assembly_dir()))),
            layers=[powertools_layer],
            role=transform_role.without_policy_updates(),
            memory_size=512,
            timeout=Duration.minutes(2),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "DELIVERY_STREAM_NAME": name,
                "POWERTOOLS_SERVICE_NAME": TRANSFORM_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        reason_sync = (
            "Firehose invokes the transform synchronously and handles failures itself (retries, then "
            "the processing-failed error prefix); a DLQ or on-failure destination only applies to "
            "asynchronous invocations."
        )
        acknowledge_regulatory(self.function, "LambdaDLQ", reason_sync)
        acknowledge(self.function, reason_sync, "Serverless-LambdaDLQ")
        acknowledge_regulatory(
            self.function,
            "LambdaConcurrency",
            "Firehose bounds the transform's concurrency (one invocation per shard/partition buffer); "
            "reserving concurrency would fail deployment in new accounts whose limit is 10.",
        )
        acknowledge_regulatory(
            self.function,
            "LambdaInsideVPC",
            "The transform calls no network service (pure validation of the event it is given); a VPC "
            "would add NAT or endpoints and cold-start cost without reducing any exposure.",
        )

        self.source_stream: kinesis.Stream | None = None
        source: firehose.ISource | None = None
        encryption: firehose.StreamEncryption | None = firehose.StreamEncryption.customer_managed_key(raw_key)
        if dataset.ingestion.source == "kinesis_stream":
            self.source_stream = kinesis.Stream(
                self,
                "SourceStream",
                stream_name=f"{name}-source",
                stream_mode=kinesis.StreamMode.ON_DEMAND,
                encryption=kinesis.StreamEncryption.KMS,
                encryption_key=raw_key,
                retention_period=Duration.hours(24),
                removal_policy=removal_policy,
            )
            acknowledge(
                self.source_stream,
                "The source stream is encrypted with the lake's customer-managed raw key, not the AWS "
                "managed aws/kinesis key: its key policy and rotation are ours and the records stay "
                "under the same key from the stream to the raw zone.",
                "AwsSolutions-KDS3",
            )
            source = firehose.KinesisStreamSource(self.source_stream)
            encryption = (
                None  # Firehose rejects SSE on a stream whose source is Kinesis (it is encrypted there)
            )

        delivery_logs = logs.LogGroup(
            self,
            "DeliveryLogs",
            encryption_key=logs_key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self.delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}
            ),
            description=f"Firehose {name}: reads its source, invokes the transform, writes the raw zone",
        )
        self.delivery_policy = iam.ManagedPolicy(
            self,
            "DeliveryPolicy",
            roles=[self.delivery_role],
            statements=self._delivery_statements(
                dataset, raw_bucket, raw_key, delivery_logs, direct_put_sse=self.source_stream is None
            ),
        )
        acknowledge(
            self.delivery_policy,
            "Firehose writes objects with generated keys, so object ARNs need a wildcard; each is "
            "confined to one of the dataset's own prefixes (records, rejections, delivery errors).",
            *(
                f"AwsSolutions-IAM5[Resource::{rendered(self, raw_bucket.arn_for_objects(p))}*]"
                for p in (raw_prefix(dataset), rejected_prefix(dataset), error_prefix(dataset))
            ),
        )

        partition = "/".join(f"{k}=!{{partitionKeyFromLambda:{k}}}" for k in ("year", "month", "day", "hour"))
        destination = firehose.S3Bucket(
            raw_bucket,
            encryption_key=raw_key,
            compression=firehose.Compression.GZIP,
            file_extension=".json.gz",
            buffering_size=Size.mebibytes(dataset.ingestion.buffer_size_mib),
            buffering_interval=Duration.seconds(dataset.ingestion.buffer_interval_seconds),
            # `dataset` is "<name>" for valid records and "<name>_rejected" for rejections.
            data_output_prefix=f"!{{partitionKeyFromLambda:dataset}}/{partition}/",
            error_output_prefix=(
                f"{error_prefix(dataset)}!{{firehose:error-output-type}}/"
                "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
            ),
            dynamic_partitioning=firehose.DynamicPartitioningProps(
                enabled=True, retry_duration=Duration.minutes(5)
            ),
            processors=[
                firehose.LambdaFunctionProcessor(
                    self.function,
                    # 1 MiB in keeps the response (normalized JSON, rejections carrying the
                    # original bytes) far below Lambda's 6 MB response limit.
                    buffer_size=Size.mebibytes(1),
                    buffer_interval=Duration.seconds(60),
                    retries=3,
                )
            ],
            logging_config=firehose.EnableLogging(delivery_logs),
            role=self.delivery_role.without_policy_updates(),
        )
        self.delivery_stream = firehose.DeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_name=name,
            destination=destination,
            source=source,
            encryption=encryption,
            role=self.delivery_role.without_policy_updates(),
        )
        self.delivery_stream.node.add_dependency(self.delivery_policy)
        # The Firehose L2 adds a mapping of Firehose's CIDR blocks to the stack, for Redshift and
        # Splunk destinations; an S3 destination never refers to it, and CloudFormation's
        # validation warns about an unreferenced mapping in any stack that holds this construct.
        Stack.of(self).node.try_remove_child("@aws-cdk--aws-kinesisfirehose.CidrBlocks")
        if self.source_stream is not None:
            acknowledge(
                self.delivery_stream,
                "Firehose refuses server-side encryption on a delivery stream whose source is a "
                "Kinesis data stream; the records are encrypted at rest in that stream with the raw "
                "key, and Firehose writes them to the raw zone encrypted with the same key.",
                "AwsSolutions-KDF1",
            )
        self.producer_role = iam.Role(
            self,
            "ProducerRole",
            role_name=f"{name}-producer",
            assumed_by=iam.CompositePrincipal(*producers) if producers else iam.AccountRootPrincipal(),
            max_session_duration=PRODUCER_SESSION,
            description=f"Producers of {dataset.name}: put records into its stream, nothing else",
        )
        iam.ManagedPolicy(
            self, "ProducerPolicy", roles=[self.producer_role], statements=self._producer_statements(raw_key)
        )

    def _delivery_statements(
        self,
        dataset: Dataset,
        bucket: s3.IBucket,
        key: kms.IKey,
        delivery_logs: logs.ILogGroup,
        *,
        direct_put_sse: bool,
    ) -> list[iam.PolicyStatement]:
        """Exactly what Firehose needs (https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html)."""
        prefixes = (raw_prefix(dataset), rejected_prefix(dataset), error_prefix(dataset))
        statements = [
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{p}*") for p in prefixes],
            ),
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"},
                    # With S3 Bucket Keys the encryption context is the bucket ARN.
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [bucket.bucket_arn, bucket.arn_for_objects("*")]
                    },
                },
            ),
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                resources=[self.function.function_arn],
            ),
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[delivery_logs.log_group_arn]
            ),
        ]
        if direct_put_sse:
            # Server-side encryption of the Direct PUT stream with the raw-zone key.
            statements.append(
                key_use_via("firehose", [key], ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"])
            )
        if self.source_stream is not None:
            statements += [
                iam.PolicyStatement(
                    actions=[
                        "kinesis:DescribeStream",
                        "kinesis:DescribeStreamSummary",
                        "kinesis:GetShardIterator",
                        "kinesis:GetRecords",
                        "kinesis:ListShards",
                    ],
                    resources=[self.source_stream.stream_arn],
                ),
                key_use_via("kinesis", [key], ["kms:Decrypt"]),
            ]
        return statements

    def _assembly_dir(self) -> Path:
        """The folder the app synthesizes into (``cdk.out`` under the CLI)."""
        stage = Stage.of(self)
        if stage is None:
            raise ValueError(f"{self.node.path}: a delivery stream must be built inside a CDK app")
        return Path(stage.outdir)

    def _producer_statements(self, key: kms.IKey) -> list[iam.PolicyStatement]:
        """Put records into the stream producers write to, nothing else (no reads, no describes):
        a Direct PUT stream needs no key of its sender (Firehose encrypts with its own grant), a
        Kinesis source a data key of the raw key for that stream alone (Kinesis Data Streams'
        "Example producer permissions"; the stream's ARN is its encryption context)."""
        if self.source_stream is None:
            return [
                iam.PolicyStatement(
                    actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                    resources=[self.delivery_stream.delivery_stream_arn],
                )
            ]
        stream_arn = self.source_stream.stream_arn
        return [
            iam.PolicyStatement(actions=["kinesis:PutRecord", "kinesis:PutRecords"], resources=[stream_arn]),
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"kinesis.{Aws.REGION}.amazonaws.com",
                        "kms:EncryptionContext:aws:kinesis:arn": stream_arn,
                    }
                },
            ),
        ]

    def metric_freshness(self) -> cloudwatch.Metric:
        """Age of the oldest record not yet delivered to S3 (seconds, maximum over 5 minutes)."""
        return self.delivery_stream.metric(
            "DeliveryToS3.DataFreshness", statistic="Maximum", period=Duration.minutes(5)
        )

    def metric_incoming_records(self) -> cloudwatch.Metric:
        """Records that reached the stream (sum over 5 minutes), whether or not the transform then
        took them: ``IncomingRecords`` for Direct PUT, ``DataReadFromKinesisStream.Records`` for a
        Kinesis source (Firehose's CloudWatch metrics)."""
        name = "IncomingRecords" if self.source_stream is None else "DataReadFromKinesisStream.Records"
        return self.delivery_stream.metric(name, statistic="Sum", period=Duration.minutes(5))

    def metric_partition_limit_exceeded(self) -> cloudwatch.Metric:
        """1 while the stream holds more active partitions (event-time hours, valid and rejected)
        than its limit (500 by default): Firehose then sends the rest of the records to the error
        prefix (``activePartitionExceeded``) instead of the raw zone."""
        return self.delivery_stream.metric(
            "PartitionCountExceeded", statistic="Maximum", period=Duration.minutes(5)
        )

    def metric_invocations_succeeded(self) -> cloudwatch.Metric:
        """Firehose's share of its invocations of the transform that succeeded (1 when all did;
        the lowest over 5 minutes; each retry is an invocation). A batch whose invocations all
        failed (throttled, timed out, not permitted) goes to processing-failed without the
        function ever counting it."""
        return self.delivery_stream.metric(
            "ExecuteProcessing.Success", statistic="Minimum", period=Duration.minutes(5)
        )

    def metric_transform(self, name: str) -> cloudwatch.Metric:
        """A count the transform publishes: RecordsIn, RecordsOk, RecordsRejected, RecordsProcessingFailed."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": TRANSFORM_SERVICE, "dataset": self.dataset.name},
            statistic="Sum",
            period=Duration.minutes(5),
        )
