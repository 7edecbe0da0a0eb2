"""A Firehose transformation batch: every record in, exactly one result out, nothing lost.

Contract (https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html): the response
holds the same ``recordId``s as the event, each ``Ok``, ``Dropped`` or ``ProcessingFailed`` with
base64 data, and the whole response stays under Lambda's 6 MB payload limit. Valid records come
out ``Ok`` with partition keys from the event time in UTC. Invalid records also come out ``Ok``,
as a rejection document (reasons + the original bytes) under ``<dataset>_rejected/``, so the
reason reaches S3 and an Athena table. ``ProcessingFailed`` is kept for what is not the data's
fault (a bug, or a response that would outgrow the limit): Firehose then writes the original record
under the ``processing-failed`` error prefix, so it is not lost either.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent
from aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationRecordMetadata,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseRecord,
)
from records import Invalid, RecordValidator, format_timestamp, loads

#: Lambda's synchronous response limit is 6 MB; keep a margin for the JSON envelope.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 - 64 * 1024
#: Bytes of JSON around each record in the response ({"recordId":..,"result":..,"data":..,...}).
_RECORD_OVERHEAD = 200
REJECTED_SUFFIX = "_rejected"


@dataclass
class BatchResult:
    response: dict[str, Any]
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def records_in(self) -> int:
        return self.ok + self.rejected + self.failed


#: One encoder for every record: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _b64_line(document: dict[str, Any]) -> str:
    line = _ENCODER.encode(document) + "\n"
    return base64.b64encode(line.encode("utf-8")).decode("ascii")


def _partition_keys(prefix: str, utc_iso: str) -> dict[str, str]:
    """Keys from a normalized UTC timestamp ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return {
        "dataset": prefix,
        "year": utc_iso[0:4],
        "month": utc_iso[5:7],
        "day": utc_iso[8:10],
        "hour": utc_iso[11:13],
    }


def _arrival(record: KinesisFirehoseRecord, now: datetime, cache: dict[Any, str]) -> str:
    """The record's arrival time, formatted; records of a batch mostly share one."""
    millis = record.get("approximateArrivalTimestamp")
    if millis in cache:
        return cache[millis]
    arrival = now
    if isinstance(millis, (int, float)) and not isinstance(millis, bool):
        try:
            arrival = datetime.fromtimestamp(millis / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            arrival = now
    cache[millis] = format_timestamp(arrival)
    return cache[millis]


def source_stream_of(event: dict[str, Any], fallback: str) -> str:
    """The stream the records came through; only ``records`` is guaranteed, so fall back."""
    for key in ("sourceKinesisStreamArn", "deliveryStreamArn"):
        value = event.get(key)
        if isinstance(value, str) and "/" in value:
            return value.rsplit("/", 1)[-1]
    return fallback


def transform_record(
    validator: RecordValidator,
    data: bytes,
    *,
    ingested_at: datetime | str,
    source_stream: str,
    record_id: str,
) -> tuple[bool, dict[str, Any], dict[str, str], list[str]]:
    """(accepted, output document, partition keys, reasons) for one payload.

    ``ingested_at`` is a datetime, or already formatted by :func:`records.format_timestamp`.
    """
    try:
        normalized, reasons = validator.validate(loads(data))
    except Invalid as exc:
        normalized, reasons = None, [str(exc)]
    ingested = ingested_at if isinstance(ingested_at, str) else format_timestamp(ingested_at)
    if normalized is not None:
        normalized["ingested_at"] = ingested
        normalized["source_stream"] = source_stream
        return True, normalized, _partition_keys(validator.name, normalized[validator.event_time]), []
    return False, *_rejection(
        validator.name, data, reasons, ingested=ingested, source_stream=source_stream, record_id=record_id
    )


def _rejection(
    dataset: str, data: bytes, reasons: list[str], *, ingested: str, source_stream: str, record_id: str
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(rejection document, partition keys, reasons): the reasons with the original bytes."""
    try:
        raw_text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        raw_text = None
    rejection = {
        "dataset": dataset,
        "record_id": record_id,
        "reason": reasons[0],
        "reasons": reasons,
        "ingested_at": ingested,
        "source_stream": source_stream,
        "raw_text": raw_text,
        "raw_base64": base64.b64encode(data).decode("ascii"),
    }
    return rejection, _partition_keys(dataset + REJECTED_SUFFIX, ingested), reasons


def _surrogate_rejection(
    dataset: str, data: bytes, accepted: dict[str, Any], error: UnicodeEncodeError, record_id: str
) -> tuple[str, dict[str, str], list[str]]:
    """(response data, partition keys, reasons) rejecting a record that validated but holds a lone
    UTF-16 surrogate (a ``\\ud800`` escape: valid JSON text, not valid Unicode, so no UTF-8 to
    write): the data's fault, so a rejection with its bytes, not a processing failure."""
    char = error.object[error.start : error.end]
    reasons = [f"a value holds {char!r}, a lone UTF-16 surrogate, which is not valid Unicode"]
    document, keys, reasons = _rejection(
        dataset,
        data,
        reasons,
        ingested=accepted["ingested_at"],
        source_stream=accepted["source_stream"],
        record_id=record_id,
    )
    return _b64_line(document), keys, reasons


def transform_event(
    event: dict[str, Any],
    validator: RecordValidator,
    *,
    now: datetime,
    fallback_stream: str,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> BatchResult:
    stream = source_stream_of(event, fallback_stream)
    response = KinesisFirehoseDataTransformationResponse()
    result = BatchResult(response={})
    budget = max_response_bytes
    arrivals: dict[Any, str] = {}
    for record in KinesisFirehoseEvent(event).records:
        record_id = record.record_id
        try:
            try:
                data = record.data_as_bytes
            except (binascii.Error, ValueError, TypeError):
                # Firehose always sends base64; keep whatever arrived so the rejection shows it.
                data = str(record.data).encode("utf-8", "replace")
            accepted, document, keys, reasons = transform_record(
                validator,
                data,
                ingested_at=_arrival(record, now, arrivals),
                source_stream=stream,
                record_id=record_id,
            )
            try:
                encoded = _b64_line(document)
            except UnicodeEncodeError as error:
                if not accepted:
                    raise
                accepted = False
                encoded, keys, reasons = _surrogate_rejection(
                    validator.name, data, document, error, record_id
                )
        except Exception as exc:  # a bug must not cost the batch: this record goes to processing-failed
            result.failed += 1
            result.reasons.append(f"internal error: {type(exc).__name__}")
            response.add_record(
                KinesisFirehoseDataTransformationRecord(record_id=record_id, result="ProcessingFailed")
            )
            budget -= _RECORD_OVERHEAD
            continue
        size = len(encoded) + len(record_id) + _RECORD_OVERHEAD + 40 * len(keys)
        if size > budget:
            # Out of response space: Firehose delivers the original bytes to processing-failed/.
            result.failed += 1
            result.reasons.append("response size limit")
            response.add_record(
                KinesisFirehoseDataTransformationRecord(record_id=record_id, result="ProcessingFailed")
            )
            budget -= _RECORD_OVERHEAD
            continue
        budget -= size
        if accepted:
            result.ok += 1
        else:
            result.rejected += 1
            result.reasons.extend(reasons[:1])
        response.add_record(
            KinesisFirehoseDataTransformationRecord(
                record_id=record_id,
                result="Ok",
                data=encoded,
                metadata=KinesisFirehoseDataTransformationRecordMetadata(partition_keys=keys),
            )
        )
    result.response = response.asdict() if response.records else {"records": []}
    return result
