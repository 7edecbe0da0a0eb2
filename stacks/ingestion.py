"""Ingestion: a Firehose delivery stream per dataset, its transform, and its alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from cdk_constructs.alerts import AlertTopic, alarm_above, alarm_below, alarm_without
from cdk_constructs.functions import powertools_layer
from cdk_constructs.ingestion import DatasetDeliveryStream, producer_principal
from cdk_constructs.keys import LakeKeys
from cdk_constructs.storage import LakeStorage
from config import StageConfig
from datalake.dataset import Dataset
from stacks.common import dataset_stack, log_retention, removal_policy

#: Rejected records above this share of a 5-minute window raise the alarm (percent).
REJECTED_RATE_THRESHOLD = 5


class IngestionStack(Stack):
    """The transform's shared layer; each dataset's delivery stream, transform and alarms in a
    nested stack of its own (:func:`~stacks.common.dataset_stack`)."""

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
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        layer = powertools_layer(self, "PowertoolsLayer", stage.powertools_version)
        raw_bucket = storage.raw.reference(self, "RawBucket")
        self.streams: dict[str, DatasetDeliveryStream] = {}
        self.alarms: list[cloudwatch.Alarm] = []
        for ds in datasets:
            cid = ds.construct_id
            # A nested stack per dataset: this stack holds one resource for each, so the stage's
            # datasets are not capped by CloudFormation's 500 resources a stack (stacks.common).
            nested = dataset_stack(self, ds, "Firehose delivery stream, its transform and alarms")
            stream = DatasetDeliveryStream(
                nested,
                cid,
                dataset=ds,
                name=f"{stage.prefix}-{ds.resource_name}",
                raw_bucket=raw_bucket,
                raw_key=keys.raw,
                logs_key=keys.logs,
                log_retention=log_retention(stage),
                powertools_layer=layer,
                removal_policy=removal_policy(stage),
                producers=[producer_principal(p) for p in stage.producers.get(ds.name, ())],
            )
            self.streams[ds.name] = stream
            self.alarms += self._alarms(nested, ds, stream)
        alerts.notify_on(*self.alarms)

    @staticmethod
    def _alarms(scope: Construct, ds: Dataset, stream: DatasetDeliveryStream) -> list[cloudwatch.Alarm]:
        """``ds``'s alarms, in ``scope`` (its nested stack)."""
        cid = ds.construct_id
        # Data older than two buffer intervals plus the transform's own buffering is not flowing.
        freshness_limit = 2 * ds.ingestion.buffer_interval_seconds + 300
        # Metric math drops a data point that would divide by zero, and treats a missing value as
        # 0: a window with no record has no rate, which the alarm takes as no breach. (MAX, which
        # CloudWatch advises against in alarms, and FILL, which can hold an alarm in one state, are
        # not needed for that.)
        rejected_rate = cloudwatch.MathExpression(
            expression="100 * rejected / records",
            using_metrics={
                "rejected": stream.metric_transform("RecordsRejected"),
                "records": stream.metric_transform("RecordsIn"),
            },
            label="Rejected records (%)",
            period=Duration.minutes(5),
        )
        silent = (
            [
                alarm_without(
                    scope,
                    f"{cid}SilentAlarm",
                    stream.metric_incoming_records(),
                    hours=hours,
                    description=f"{ds.name}: no record has arrived for {hours} hours: is the producer "
                    "sending? (ingestion.silent_after_hours of the dataset file)",
                )
            ]
            if (hours := ds.ingestion.silent_after_hours)
            else []
        )
        return [
            *silent,
            alarm_above(
                scope,
                f"{cid}FreshnessAlarm",
                stream.metric_freshness(),
                threshold=freshness_limit,
                evaluation_periods=3,
                description=f"{ds.name}: records older than {freshness_limit}s wait for delivery to S3",
            ),
            alarm_above(
                scope,
                f"{cid}TransformErrorsAlarm",
                stream.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                threshold=0,
                description=f"{ds.name}: the Firehose transform failed (Firehose retries, then writes processing-failed)",
            ),
            alarm_above(
                scope,
                f"{cid}PartitionLimitAlarm",
                stream.metric_partition_limit_exceeded(),
                threshold=0,
                description=f"{ds.name}: more event-time hours at once than Firehose's active-partition "
                "limit; the rest of the records go to the error prefix (activePartitionExceeded)",
            ),
            alarm_below(
                scope,
                f"{cid}TransformInvocationsAlarm",
                stream.metric_invocations_succeeded(),
                threshold=1,
                description=f"{ds.name}: Firehose could not invoke the transform (throttled, timed out or "
                "not permitted); it retries, and a batch whose retries all fail goes to processing-failed",
            ),
            alarm_above(
                scope,
                f"{cid}ProcessingFailedAlarm",
                stream.metric_transform("RecordsProcessingFailed"),
                threshold=0,
                description=f"{ds.name}: records went to the processing-failed error prefix",
            ),
            alarm_above(
                scope,
                f"{cid}RejectedRateAlarm",
                rejected_rate,
                threshold=REJECTED_RATE_THRESHOLD,
                evaluation_periods=2,
                description=f"{ds.name}: more than {REJECTED_RATE_THRESHOLD}% of records rejected; see table {ds.name}_rejected",
            ),
        ]
