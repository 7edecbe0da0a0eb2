"""Replaying records that did not reach the raw zone: Firehose's processing-failed records and the
transform's rejections go back through the delivery stream byte for byte (moto's S3 and Firehose)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.dataset import DATASETS_DIR, load_dataset
from datalake.local_firehose import deliver
from datalake.replay import BATCH_BYTES, RECORD_BYTES, ReplayError, batches, main, put_all, replay
from datalake.sample import payloads

ORDERS = load_dataset(DATASETS_DIR / "orders.json")
RAW = "lake-test-raw"
LANDING = "lake-test-landing"  # where moto's stream delivers, untransformed
STREAM = "lake-test-orders"
ARRIVAL = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _processing_failed(tmp: Path) -> tuple[list[bytes], Path]:
    """(the payloads the real transform returned as ``ProcessingFailed``, the error object the
    local Firehose wrote for them): a response budget for a few records only, as if the rest had
    outgrown Lambda's limit."""
    sent = payloads(40, defects=False)
    delivery = deliver(sent, ORDERS, tmp, arrival=ARRIVAL, max_response_bytes=4000)
    (error_object,) = (tmp / "errors" / "orders" / "processing-failed").rglob("*.gz")
    documents = [json.loads(line) for line in gzip.decompress(error_object.read_bytes()).splitlines()]
    failed = [base64.b64decode(d["rawData"]) for d in documents]
    # each in Firehose's documented error-record form, at the arrival time of the delivery
    millis = int(ARRIVAL.timestamp() * 1000)
    assert {
        (d["attemptsMade"], d["arrivalTimestamp"], d["attemptEndingTimestamp"], d["errorCode"])
        for d in documents
    } == {(1, millis, millis, "Lambda.ProcessingFailedStatus")}
    assert error_object.relative_to(tmp).as_posix() == (
        "errors/orders/processing-failed/year=2024/month=05/day=01/hour=12/part.gz"
    )
    # nothing lost: every payload is in the raw zone, rejected, or in the error object as it was sent
    assert delivery.ok + delivery.rejected + len(failed) == len(sent)
    assert 0 < len(failed) == delivery.processing_failed and set(failed) <= set(sent)
    return failed, error_object


def _landed(s3: Any) -> dict[str, bytes]:
    """The objects moto's stream wrote, one per PutRecordBatch call (named by the second, then a
    random suffix: their names do not keep the calls' order)."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=LANDING).get("Contents", [])]
    return {k: s3.get_object(Bucket=LANDING, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def aws() -> Any:
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (RAW, LANDING):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        boto3.client("firehose").create_delivery_stream(
            DeliveryStreamName=STREAM,
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{LANDING}",
            },
        )
        yield s3


def test_failed_and_rejected_records_go_back_through_the_stream_as_first_sent(
    aws: Any, tmp_path: Path
) -> None:
    s3, firehose = aws, boto3.client("firehose")
    # GIVEN records the transform could not return (its response outgrew the limit), in Firehose's
    # error object, and records it rejected, in the rejection objects it wrote
    failed, error_object = _processing_failed(tmp_path / "failed")
    s3.put_object(
        Bucket=RAW, Key=str(error_object.relative_to(tmp_path / "failed")), Body=error_object.read_bytes()
    )
    sent = payloads(300, seed=3)
    delivery = deliver(sent, ORDERS, tmp_path, arrival=ARRIVAL)
    rejections = sorted((tmp_path / "orders_rejected").rglob("*.json.gz"))
    assert delivery.rejected > 0 and rejections
    for path in rejections:
        s3.put_object(Bucket=RAW, Key=str(path.relative_to(tmp_path)), Body=path.read_bytes())
    refused = [
        base64.b64decode(json.loads(line)["raw_base64"])
        for path in rejections
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert len(refused) == delivery.rejected

    # WHEN an operator first looks, then replays the failed records, then the rejected ones
    seen: list[str] = []
    looked = replay(
        s3, firehose, stream=STREAM, url=f"s3://{RAW}/errors/orders/", dry_run=True, report=seen.append
    )
    # THEN a dry run counts and sends nothing
    assert (looked.objects, looked.records) == (1, len(failed))
    assert _landed(s3) == {}
    assert seen[-1] == f"would send {len(failed)} record(s) of 1 object(s) to {STREAM}"
    done = replay(
        s3, firehose, stream=STREAM, url=f"s3://{RAW}/errors/orders/processing-failed/", report=seen.append
    )
    assert (done.objects, done.records) == (1, len(failed))
    # ... and the command line does the same for the rejections
    first = _landed(s3)
    assert main(["--stream", STREAM, f"s3://{RAW}/orders_rejected/"]) == 0
    then = {k: v for k, v in _landed(s3).items() if k not in first}
    # THEN the stream got every record exactly as its producer first sent it, in order (one call
    # each: fewer than 500 records)
    assert list(first.values()) == [b"".join(failed)]
    assert list(then.values()) == [b"".join(refused)]


def test_only_the_rejections_for_a_given_reason_are_sent_when_asked(aws: Any, tmp_path: Path) -> None:
    s3, firehose = aws, boto3.client("firehose")
    # GIVEN rejections for several reasons, and Firehose's error records, under one prefix
    deliver(payloads(300, seed=3), ORDERS, tmp_path, arrival=ARRIVAL)
    documents = []
    for path in sorted((tmp_path / "orders_rejected").rglob("*.json.gz")):
        s3.put_object(Bucket=RAW, Key=f"lake/{path.relative_to(tmp_path)}", Body=path.read_bytes())
        documents += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    _, error_object = _processing_failed(tmp_path / "failed")
    s3.put_object(Bucket=RAW, Key="lake/errors/f.gz", Body=error_object.read_bytes())
    firsts = Counter(d["reasons"][0] for d in documents)
    wanted = [
        base64.b64decode(d["raw_base64"]) for d in documents if any("status: " in r for r in d["reasons"])
    ]
    assert 0 < len(wanted) < len(documents)
    # WHEN an operator counts by reason, then sends only the records refused for their status (say,
    # after a new status value was allowed)
    seen: list[str] = []
    looked = replay(s3, firehose, stream=STREAM, url=f"s3://{RAW}/lake/", dry_run=True, report=seen.append)
    done = replay(s3, firehose, stream=STREAM, url=f"s3://{RAW}/lake/", reason="status: ", report=seen.append)
    # THEN the count shows each first reason; only those records reached the stream, and the rest
    # (other reasons, and the error records, which have none) are counted as left out
    (most, count), *_ = firsts.most_common()
    assert f"  {count} rejected for: {most}" in seen
    assert looked.reasons == firsts
    assert list(_landed(s3).values()) == [b"".join(wanted)]
    assert done.records == len(wanted)
    assert done.left_out == looked.records - len(wanted)
    assert seen[-1].endswith(f"; {done.left_out} left out, no reason containing 'status: '")
    # AND each object's line says how many of its records were left out
    assert sum(int(line.split(", ")[1].split()[0]) for line in seen if line.endswith(" left out")) == (
        done.left_out
    )


def test_an_object_that_holds_no_such_records_is_named_and_nothing_of_it_is_sent(
    aws: Any, tmp_path: Path
) -> None:
    s3 = aws
    # GIVEN a prefix that also takes the dataset's curated-bound raw objects (orders/ sorts first)
    deliver(payloads(20, defects=False), ORDERS, tmp_path, arrival=ARRIVAL)
    raw_object = sorted((tmp_path / "orders").rglob("*.json.gz"))[0]
    key = str(raw_object.relative_to(tmp_path))
    s3.put_object(Bucket=RAW, Key=key, Body=raw_object.read_bytes())
    # WHEN it is replayed
    with pytest.raises(
        ReplayError, match=rf"s3://{RAW}/{key}: document 1 is not an error or rejection record"
    ):
        replay(s3, boto3.client("firehose"), stream=STREAM, url=f"s3://{RAW}/orders")
    # THEN nothing reached the stream, and the command line says so with a non-zero status
    assert _landed(s3) == {}
    assert main(["--stream", STREAM, f"s3://{RAW}/orders"]) == 1
    # ... as for an object that is not text at all (a gzip cut short)
    s3.put_object(Bucket=RAW, Key="orders_rejected/cut.json.gz", Body=raw_object.read_bytes()[:30])
    with pytest.raises(ReplayError, match=rf"s3://{RAW}/orders_rejected/cut.json.gz: cannot be read"):
        replay(s3, boto3.client("firehose"), stream=STREAM, url=f"s3://{RAW}/orders_rejected/")
    assert main(["--stream", STREAM, "/tmp/orders_rejected"]) == 1


def test_a_record_over_firehoses_limit_stops_its_object_before_anything_is_sent(aws: Any) -> None:
    s3 = aws
    big = {"raw_base64": base64.b64encode(b"x" * (1000 * 1024 + 1)).decode()}
    small = {"raw_base64": base64.b64encode(b'{"order_id":"o-1"}').decode()}
    s3.put_object(
        Bucket=RAW, Key="orders_rejected/x.json", Body=f"{json.dumps(small)}\n{json.dumps(big)}\n".encode()
    )
    with pytest.raises(ReplayError, match="1 record\\(s\\) over Firehose's 1000 KiB limit"):
        replay(s3, boto3.client("firehose"), stream=STREAM, url=f"s3://{RAW}/orders_rejected/")
    assert _landed(s3) == {}
    # a record of the limit exactly (1000 KiB, as Firehose's quota page gives it) is sent
    limit = {"raw_base64": base64.b64encode(b"x" * 1000 * 1024).decode()}
    s3.put_object(Bucket=RAW, Key="orders_rejected/y.json", Body=json.dumps(limit).encode())
    assert (
        replay(s3, boto3.client("firehose"), stream=STREAM, url=f"s3://{RAW}/orders_rejected/y").records == 1
    )


@pytest.mark.parametrize(
    ("url", "body", "problem"),
    [
        ("s3:///orders_rejected/", b"", "s3:///orders_rejected/: expected s3://<raw bucket>/<prefix>"),
        ("https://b/orders_rejected/", b"", "expected s3://<raw bucket>/<prefix>"),
        # base64 that a lenient decoder would read by skipping the '!': another record than was sent
        (f"s3://{RAW}/orders_rejected/", b'{"raw_base64": "eyJ!hIjoxfQ=="}', "document 1 is not an error"),
        (f"s3://{RAW}/orders_rejected/", b'{"raw_base64": "e30="}\n[1]', "document 2 is not an error"),
    ],
)
def test_a_url_or_a_document_that_is_not_replayable_is_named_and_nothing_is_sent(
    aws: Any, url: str, body: bytes, problem: str
) -> None:
    aws.put_object(Bucket=RAW, Key="orders_rejected/z.json", Body=body)
    with pytest.raises(ReplayError, match=re.escape(problem)):
        replay(aws, boto3.client("firehose"), stream=STREAM, url=url)
    assert _landed(aws) == {}


class _Refusing:
    """A stream that refuses the records named in ``refusals``, call by call, and records each call."""

    def __init__(self, refusals: list[set[bytes]]) -> None:
        self.refusals = refusals
        self.calls: list[list[bytes]] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        data = [r["Data"] for r in Records]
        refused = self.refusals[min(len(self.calls), len(self.refusals) - 1)]
        self.calls.append(data)
        responses = [
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
            if d in refused
            else {"RecordId": "r"}
            for d in data
        ]
        return {"FailedPutCount": sum("ErrorCode" in r for r in responses), "RequestResponses": responses}


def test_records_the_stream_refuses_are_sent_again_with_backoff_then_reported() -> None:
    records = [b"a", b"b", b"c"]
    # GIVEN a stream that refuses two records once
    stream = _Refusing([{b"a", b"c"}, set()])
    delays: list[float] = []
    put_all(stream, STREAM, records, sleep=delays.append)
    # THEN only those two are sent again, after a pause
    assert stream.calls == [[b"a", b"b", b"c"], [b"a", b"c"]]
    assert delays == [0.4]
    # GIVEN a stream that keeps refusing one record
    stubborn = _Refusing([{b"b"}])
    delays.clear()
    with pytest.raises(
        ReplayError,
        match=rf"1 record\(s\) still refused by {STREAM} after 6 attempts \(ServiceUnavailableException\)",
    ):
        put_all(stubborn, STREAM, records, sleep=delays.append)
    # THEN it was tried six times with growing pauses, and no other record was sent twice
    assert stubborn.calls == [[b"a", b"b", b"c"], *[[b"b"]] * 5]
    assert delays == sorted(delays) and len(delays) == 5


def test_batches_keep_to_put_record_batchs_limits_and_order() -> None:
    small = [bytes([i % 256]) * 10 for i in range(1201)]
    assert [len(b) for b in batches(small)] == [500, 500, 201]
    large = [bytes([i]) * (RECORD_BYTES - 1) for i in range(9)]  # four fit in 4 MiB, not five
    split = list(batches(large))
    assert [len(b) for b in split] == [4, 4, 1]
    assert all(sum(map(len, b)) <= BATCH_BYTES for b in split)
    assert [r for b in split for r in b] == large
    assert list(batches([])) == []
    # PutRecordBatch takes 4 MiB a call: records that sum to it exactly are one call, a byte more two
    exactly = [b"x" * 1000 * 1024] * 4 + [b"y" * 96 * 1024]
    assert [len(b) for b in batches(exactly)] == [5]
    assert [len(b) for b in batches([*exactly[:4], b"y" * (96 * 1024 + 1)])] == [4, 1]


def test_a_dataset_fed_by_a_kinesis_stream_gets_its_records_back_through_that_stream(aws: Any) -> None:
    # GIVEN a Firehose stream that reads a Kinesis data stream (it takes no direct put), and
    # rejections of records that came through it
    s3, kinesis = aws, boto3.client("kinesis")
    kinesis.create_stream(StreamName="lake-test-views-source", ShardCount=1)
    arn = kinesis.describe_stream(StreamName="lake-test-views-source")["StreamDescription"]["StreamARN"]
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName="lake-test-views",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={
            "KinesisStreamARN": arn,
            "RoleARN": "arn:aws:iam::123456789012:role/f",
        },
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{LANDING}",
        },
    )
    sent = [json.dumps({"view_id": f"v-{i}", "page": "/" * i}).encode() for i in range(1, 4)]
    documents = "".join(
        json.dumps({"raw_base64": base64.b64encode(r).decode(), "reasons": ["x"]}) + "\n" for r in sent
    )
    s3.put_object(Bucket=RAW, Key="views_rejected/part.json.gz", Body=gzip.compress(documents.encode()))
    # WHEN they are replayed to the Firehose stream
    seen: list[str] = []
    done = replay(
        s3,
        boto3.client("firehose"),
        kinesis=kinesis,
        stream="lake-test-views",
        url=f"s3://{RAW}/views_rejected/",
        report=seen.append,
    )
    # THEN they went into the data stream, byte for byte, and the report says where
    assert done.records == 3
    assert seen[0] == "lake-test-views reads the Kinesis data stream lake-test-views-source: records go there"
    shard = kinesis.describe_stream(StreamName="lake-test-views-source")["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName="lake-test-views-source", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]] == sent
    assert _landed(s3) == {}  # nothing was put to the Firehose stream itself
