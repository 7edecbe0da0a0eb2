"""Lambda entry point of the Firehose transform. The logic lives in ``transform`` and ``records``."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from records import RecordValidator, cause_of
from transform import transform_event

logger = Logger()
metrics = Metrics()
# The dataset spec of config/datasets/<name>.json, which the CDK app puts beside this module in
# the deployment package (cdk_constructs.ingestion.stage_transform).
VALIDATOR = RecordValidator(json.loads(Path(__file__).with_name("dataset_spec.json").read_text()))
DELIVERY_STREAM_NAME = os.environ.get("DELIVERY_STREAM_NAME", "")


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = transform_event(event, VALIDATOR, now=datetime.now(UTC), fallback_stream=DELIVERY_STREAM_NAME)
    metrics.add_dimension(name="dataset", value=VALIDATOR.name)
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=result.records_in)
    metrics.add_metric(name="RecordsOk", unit=MetricUnit.Count, value=result.ok)
    metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=result.rejected)
    metrics.add_metric(name="RecordsProcessingFailed", unit=MetricUnit.Count, value=result.failed)
    if result.rejected or result.failed:
        # Causes, never the reasons: a reason may quote a value (a PII column's too), and this log
        # is outside Lake Formation. The reasons are in the rejected table.
        logger.info(
            "records rejected or failed",
            extra={
                "rejected": result.rejected,
                "failed": result.failed,
                "top_causes": Counter(cause_of(r) for r in result.reasons).most_common(5),
            },
        )
    return result.response
