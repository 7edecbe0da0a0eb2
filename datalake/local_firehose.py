"""What Firehose does around the transform, on local files: batch, invoke, partition, gzip, write;
and, for records the transform returns as ``ProcessingFailed``, its error records under
``errors/<dataset>/processing-failed/``, so nothing is lost locally either.

Used by the tests, the benchmarks and the local pipeline run. It calls the real transform
(``lambda/firehose_transform``) with real invocation events, in both event shapes.
"""

from __future__ import annotations

import base64
import gzip
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TRANSFORM_DIR = Path(__file__).resolve().parent.parent / "lambda" / "firehose_transform"
if str(TRANSFORM_DIR) not in sys.path:
    sys.path.insert(0, str(TRANSFORM_DIR))

from records import RecordValidator  # noqa: E402
from transform import MAX_RESPONSE_BYTES, transform_event  # noqa: E402

from datalake.dataset import Dataset  # noqa: E402

#: Firehose invokes the transform with at most this much input (the processor's buffer, 1 MiB).
INVOCATION_BYTES = 1024 * 1024


@dataclass
class Delivery:
    records_in: int = 0
    ok: int = 0
    rejected: int = 0
    processing_failed: int = 0
    invocations: int = 0
    objects: list[Path] = field(default_factory=list)


def invocation_events(
    payloads: list[bytes],
    *,
    stream: str,
    arrival: datetime,
    kinesis_every: int = 2,
    arrivals: Sequence[datetime] | None = None,
) -> list[dict[str, Any]]:
    """Firehose invocation events under the size limit; every ``kinesis_every``-th one has the
    Kinesis-source shape (``sourceKinesisStreamArn`` and ``kinesisRecordMetadata``). Each record
    arrived at ``arrival``, or at its own time in ``arrivals`` (one per payload)."""
    events: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    times = [int(t.timestamp() * 1000) for t in arrivals] if arrivals is not None else None
    arrival_ms = int(arrival.timestamp() * 1000)

    def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        event: dict[str, Any] = {
            "invocationId": f"local-{len(events)}",
            "deliveryStreamArn": f"arn:aws:firehose:local:000000000000:deliverystream/{stream}",
            "region": "local",
            "records": batch,
        }
        if kinesis_every and (len(events) + 1) % kinesis_every == 0:
            event["sourceKinesisStreamArn"] = f"arn:aws:kinesis:local:000000000000:stream/{stream}-source"
            for i, record in enumerate(batch):
                record["kinesisRecordMetadata"] = {
                    "shardId": "shardId-000000000000",
                    "partitionKey": str(i),
                    "approximateArrivalTimestamp": record["approximateArrivalTimestamp"],
                    "sequenceNumber": f"{len(events):010d}{i:010d}",
                    "subsequenceNumber": 0,
                }
        events.append(event)
        batch, size = [], 0

    for i, payload in enumerate(payloads):
        data = base64.b64encode(payload).decode("ascii")
        if batch and size + len(data) > INVOCATION_BYTES:
            flush()
        millis = times[i] if times is not None else arrival_ms
        batch.append({"recordId": f"{i:012d}", "approximateArrivalTimestamp": millis, "data": data})
        size += len(data)
    flush()
    return events


def _error_record(record: dict[str, Any], arrival: datetime) -> bytes:
    """Firehose's record for one that failed processing (its documented fields; the code and the
    message stand for Lambda's, which nothing here reads): the original data, base64 as it came."""
    millis = int(arrival.timestamp() * 1000)
    document = {
        "attemptsMade": 1,
        "arrivalTimestamp": record["approximateArrivalTimestamp"],
        "errorCode": "Lambda.ProcessingFailedStatus",
        "errorMessage": "ProcessingFailed status set for record",
        "attemptEndingTimestamp": millis,
        "rawData": record["data"],
        "lambdaArn": "arn:aws:lambda:local:000000000000:function:transform",
    }
    return (json.dumps(document) + "\n").encode()


def deliver(
    payloads: list[bytes],
    dataset: Dataset,
    raw_dir: Path,
    *,
    stream: str = "local",
    arrival: datetime | None = None,
    object_name: str = "part",
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    arrivals: Sequence[datetime] | None = None,
) -> Delivery:
    """Run the payloads through the real transform and write what Firehose writes under ``raw_dir``:
    ``<dataset>/year=/month=/day=/hour=/<object>.json.gz``, ``<dataset>_rejected/...``, and
    ``errors/<dataset>/processing-failed/year=/month=/day=/hour=/<object>.gz`` (arrival time) in
    Firehose's documented error-record form. ``max_response_bytes`` stands for Lambda's limit on
    the transform's response. ``arrivals``: each payload's own arrival time (its ``ingested_at``
    and, for a rejection, its folder's hour), instead of ``arrival`` for all."""
    arrival = (arrival or datetime.now(UTC)).astimezone(UTC)
    validator = RecordValidator(dataset.to_spec())
    delivery = Delivery(records_in=len(payloads))
    buffers: dict[str, list[bytes]] = defaultdict(list)
    failed_prefix = f"errors/{dataset.name}/processing-failed/{arrival:year=%Y/month=%m/day=%d/hour=%H}"
    for event in invocation_events(payloads, stream=stream, arrival=arrival, arrivals=arrivals):
        delivery.invocations += 1
        result = transform_event(
            event, validator, now=arrival, fallback_stream=stream, max_response_bytes=max_response_bytes
        )
        sent = {r["recordId"]: r for r in event["records"]}
        delivery.ok += result.ok
        delivery.rejected += result.rejected
        delivery.processing_failed += result.failed
        for record in result.response["records"]:
            if record["result"] != "Ok":
                buffers[failed_prefix].append(_error_record(sent[record["recordId"]], arrival))
                continue
            keys = record["metadata"]["partitionKeys"]
            prefix = f"{keys['dataset']}/year={keys['year']}/month={keys['month']}/day={keys['day']}/hour={keys['hour']}"
            buffers[prefix].append(base64.b64decode(record["data"]))
    for prefix, lines in sorted(buffers.items()):
        path = (
            raw_dir / prefix / (f"{object_name}.gz" if prefix == failed_prefix else f"{object_name}.json.gz")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
        delivery.objects.append(path)
    return delivery
