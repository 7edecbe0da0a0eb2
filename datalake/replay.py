"""Send records that did not reach the raw zone back through their dataset's delivery stream.

Two kinds of objects in the raw bucket hold such records, each with the record's original bytes:

- ``errors/<dataset>/processing-failed/...``: Firehose's own error records (``rawData``, base64),
  written when the transform failed (a bug) or its response outgrew Lambda's limit; and the other
  error types under ``errors/<dataset>/`` (``activePartitionExceeded``: more event-time hours at
  once than the stream's partition limit). Whether such a record holds the bytes as sent or as the
  transform wrote them, both go through: the transform accepts its own output, changing only
  ``ingested_at`` (a test holds it);
- ``<dataset>_rejected/...``: the transform's rejections (``raw_base64``), once the dataset file has
  been changed to accept what was refused, or the producer's mistake is understood.

Each record is sent as it was first sent, and goes through the transform again: a record that is
still invalid is rejected again, with its reasons. It arrives now, so its ``ingested_at`` is the
replay's time and it wins over any version of its key that arrived since it first failed (the
runbook says what to do about that). Sending an object twice is harmless downstream (the Glue job
keeps one version per record key), but it is not needed: the tool reports each object as sent
once all its records are accepted.

    python -m datalake.replay --stream lake-sbx-orders \\
        s3://lake-sbx-raw-<account>-<region>/errors/orders/processing-failed/year=2024/month=05/

needs ``s3:ListBucket``/``s3:GetObject`` on the prefix, ``kms:Decrypt`` on the raw key,
``firehose:DescribeDeliveryStream`` and ``firehose:PutRecordBatch`` on the stream; for a dataset
whose stream reads a Kinesis data stream, ``kinesis:PutRecords`` on that stream and
``kms:GenerateDataKey`` on its key (the raw key) instead of ``firehose:PutRecordBatch``.
``--dry-run`` reads and counts, and sends nothing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlparse

from datalake.cli import ToolError, run

#: PutRecordBatch's limits: records per call, bytes per call, bytes per record.
BATCH_RECORDS = 500
BATCH_BYTES = 4 * 1024 * 1024
RECORD_BYTES = 1000 * 1024
#: The field holding the original bytes: Firehose's error records, then the transform's rejections.
PAYLOAD_FIELDS = ("rawData", "raw_base64")


class ReplayError(ToolError):
    """An object that cannot be replayed, or records Firehose kept refusing: named, with the fix."""


class Record(NamedTuple):
    data: bytes
    #: The transform's reasons for a rejection; empty for Firehose's error records.
    reasons: tuple[str, ...]


def object_text(body: bytes, errors: str = "strict") -> str:
    """An object's text, gunzipped when it is gzip; ``ValueError`` when it cannot be read as text.
    ``errors`` as for ``bytes.decode``: ``surrogateescape`` keeps bytes that are not UTF-8, to be
    encoded back as they were."""
    try:
        return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8", errors)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(str(error)) from None


def documents(text: str) -> Iterator[tuple[int, int, Any]]:
    """Each JSON document of ``text`` with where it starts and ends: one after another, with or
    without whitespace between (Firehose's error objects). ``json.JSONDecodeError`` at the first
    that is not JSON."""
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return
        document, end = decoder.raw_decode(text, at)
        yield at, end, document
        at = end


def payload_of(document: Any) -> bytes:
    """The original bytes an error or rejection document holds, base64-encoded in one of
    :data:`PAYLOAD_FIELDS`; ``StopIteration``, ``binascii.Error`` or ``TypeError`` when it holds none."""
    field = next(f for f in PAYLOAD_FIELDS if isinstance(document, dict) and f in document)
    return base64.b64decode(document[field], validate=True)


def _not_a_record(name: str, number: int, error: str) -> str:
    return (
        f"{name}: document {number} is not an error or rejection record ({error}); replay only "
        "objects under errors/<dataset>/ or <dataset>_rejected/"
    )


def records_in(body: bytes, name: str) -> list[Record]:
    """The original records of one error or rejection object (gzip or not): one JSON document per
    record, each with its bytes base64-encoded in one of :data:`PAYLOAD_FIELDS`."""
    try:
        text = object_text(body)
    except ValueError as error:
        raise ReplayError(f"{name}: cannot be read as JSON text ({error}); nothing of it was sent") from None
    records: list[Record] = []
    number = 0  # documents read whole
    try:
        for _, _, document in documents(text):
            number += 1
            data = payload_of(document)
            records.append(Record(data, tuple(str(r) for r in document.get("reasons") or ())))
    except json.JSONDecodeError:
        raise ReplayError(_not_a_record(name, number + 1, "JSONDecodeError")) from None
    except (StopIteration, binascii.Error, TypeError) as error:
        raise ReplayError(_not_a_record(name, number, type(error).__name__)) from None
    return records


def batches(records: list[bytes]) -> Iterator[list[bytes]]:
    """``records`` in PutRecordBatch calls: at most 500 records and 4 MiB each, in order."""
    batch: list[bytes] = []
    size = 0
    for record in records:
        if batch and (len(batch) == BATCH_RECORDS or size + len(record) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += len(record)
    if batch:
        yield batch


class KinesisSource:
    """PutRecordBatch's shape over PutRecords into the Kinesis data stream that feeds a Firehose
    stream: Firehose refuses direct puts to a stream whose source is a data stream
    (``KinesisStreamAsSource``), so records go back the way they first came. Each gets a random
    partition key, which spreads them over the shards."""

    def __init__(self, kinesis: Any, stream_arn: str) -> None:
        self._kinesis = kinesis
        self.stream_name = stream_arn.rsplit("/", 1)[-1]

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        response = self._kinesis.put_records(
            StreamName=self.stream_name,
            Records=[{"Data": r["Data"], "PartitionKey": uuid.uuid4().hex} for r in Records],
        )
        return {
            "FailedPutCount": response.get("FailedRecordCount", 0),
            "RequestResponses": response["Records"],
        }


def way_in(firehose: Any, kinesis: Any, stream: str) -> Any:
    """What takes the records of ``stream``: the Firehose stream itself (Direct PUT), or its
    source data stream (:class:`KinesisSource`)."""
    description = firehose.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
    if description.get("DeliveryStreamType") != "KinesisStreamAsSource":
        return firehose
    return KinesisSource(kinesis, description["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"])


def put_all(
    firehose: Any,
    stream: str,
    records: list[bytes],
    *,
    attempts: int = 6,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Every record accepted by the stream: the ones a call refused (throttling, say) are sent
    again, with exponential backoff, up to ``attempts`` calls; then :class:`ReplayError`."""
    pending, codes = records, []
    for attempt in range(attempts):
        if attempt:
            sleep(min(0.2 * 2**attempt, 10.0))
        response = firehose.put_record_batch(
            DeliveryStreamName=stream, Records=[{"Data": record} for record in pending]
        )
        if not response.get("FailedPutCount"):
            return
        pending = [
            record
            for record, result in zip(pending, response["RequestResponses"], strict=True)
            if "ErrorCode" in result
        ]
        codes = sorted({r["ErrorCode"] for r in response["RequestResponses"] if "ErrorCode" in r})
    raise ReplayError(
        f"{len(pending)} record(s) still refused by {stream} after {attempts} attempts ({', '.join(codes)})"
    )


@dataclass
class Replayed:
    objects: int = 0
    records: int = 0
    #: Rejections left out because none of their reasons holds ``reason``.
    left_out: int = 0
    #: Each rejection's first reason, over every record read.
    reasons: Counter[str] = field(default_factory=Counter)


def replay(
    s3: Any,
    firehose: Any,
    *,
    stream: str,
    url: str,
    dry_run: bool = False,
    reason: str | None = None,
    report: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    kinesis: Any = None,
) -> Replayed:
    """Send the records of every object under ``url`` (``s3://bucket/prefix``) to ``stream``, one
    object at a time, reporting each once all its records are accepted.

    With ``reason``, only the rejections with a reason that contains it are sent (say, ``status:
    not an allowed value`` after that value was allowed): the others would only be rejected again.
    Firehose's error records have no reasons, so none of them is sent then.

    A stream fed by a Kinesis data stream takes no direct put: its records are put into that
    data stream (``kinesis``, a Kinesis client), as they first came."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ReplayError(f"{url}: expected s3://<raw bucket>/<prefix>")
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    done = Replayed()
    verb = "would send" if dry_run else "sent"
    target = way_in(firehose, kinesis, stream)
    if isinstance(target, KinesisSource):
        report(f"{stream} reads the Kinesis data stream {target.stream_name}: records go there")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for listed in page.get("Contents", []):
            key = listed["Key"]
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            read = records_in(body, f"s3://{bucket}/{key}")
            done.reasons.update(r.reasons[0] for r in read if r.reasons)
            records = [r.data for r in read if reason is None or any(reason in x for x in r.reasons)]
            if too_large := [len(r) for r in records if len(r) > RECORD_BYTES]:
                raise ReplayError(
                    f"s3://{bucket}/{key}: {len(too_large)} record(s) over Firehose's 1000 KiB limit "
                    "per record, which the stream would refuse; nothing of this object was sent"
                )
            if not dry_run:
                for batch in batches(records):
                    put_all(target, stream, batch, sleep=sleep)
            done.objects += 1
            done.records += len(records)
            done.left_out += len(read) - len(records)
            left_out = f", {len(read) - len(records)} left out" if reason is not None else ""
            report(f"{verb} {len(records)} record(s) of s3://{bucket}/{key}{left_out}")
    for first, count in done.reasons.most_common(10):
        report(f"  {count} rejected for: {first}")
    left_out = f"; {done.left_out} left out, no reason containing {reason!r}" if reason is not None else ""
    report(f"{verb} {done.records} record(s) of {done.objects} object(s) to {stream}{left_out}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datalake.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", required=True, help="the dataset's delivery stream, <prefix>-<dataset>")
    parser.add_argument("--dry-run", action="store_true", help="read and count; send nothing")
    parser.add_argument(
        "--reason", help="send only the rejections with a reason containing this text (e.g. 'status:')"
    )
    parser.add_argument(
        "url", help="s3://<raw bucket>/errors/<dataset>/processing-failed/... or .../<dataset>_rejected/..."
    )
    args = parser.parse_args(argv)

    def call() -> None:
        import boto3

        replay(
            boto3.client("s3"),
            boto3.client("firehose"),
            kinesis=boto3.client("kinesis"),
            stream=args.stream,
            url=args.url,
            dry_run=args.dry_run,
            reason=args.reason,
        )

    return run("replay", call)


if __name__ == "__main__":
    sys.exit(main())
