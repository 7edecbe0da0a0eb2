"""Loading history into the raw zone through the real transform, in moto's S3: the objects are
those the local Firehose writes for the same records, chunk by chunk, and never overwrite."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.backfill import BackfillError, arrivals, backfill, main
from datalake.dataset import DATASETS_DIR, load_dataset
from datalake.local_firehose import deliver
from datalake.sample import payloads

ORDERS = load_dataset(DATASETS_DIR / "orders.json")
RAW = "lake-tst-raw-123456789012-eu-west-1"  # named as the lake names its raw bucket
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


@pytest.fixture
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


def _objects(s3: Any) -> dict[str, bytes]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=RAW).get("Contents", [])]
    return {k: gzip.decompress(s3.get_object(Bucket=RAW, Key=k)["Body"].read()) for k in keys}


def _by_folder(objects: dict[str, bytes]) -> Counter[str]:
    """Each record, counted under its object's folder; a rejection without its ``record_id``,
    which numbers the records of one invocation."""

    def record(line: str) -> str:
        document = json.loads(line)
        document.pop("record_id", None)
        return json.dumps(document, sort_keys=True)

    return Counter(
        f"{key.rsplit('/', 1)[0]} {record(line)}"
        for key, body in objects.items()
        for line in body.decode().splitlines()
    )


def test_history_lands_as_the_stream_would_write_it_chunk_by_chunk(s3: Any, tmp_path: Path) -> None:
    # GIVEN a file of 500 orders over three weeks as producers send them (malformed, invalid and
    # re-sent ones among them), with blank lines
    sent = payloads(500, seed=3, start=datetime(2024, 3, 1, tzinfo=UTC))
    text = b"\n".join(sent[:250]) + b"\n\n" + b"\n".join(sent[250:]) + b"\n"
    blank = sum(1 for p in sent if not p.strip())
    # WHEN it is loaded in chunks of 120 records
    lines: list[str] = []
    done = backfill(
        s3, io.BytesIO(text), bucket=RAW, dataset=ORDERS, chunk_records=120, now=NOW, report=lines.append
    )
    # THEN every record is counted once: accepted or rejected
    assert done.records == len(sent) - blank == done.ok + done.rejected
    assert done.processing_failed == 0 and done.rejected > 0
    # AND the raw zone holds what Firehose and the transform write for those records: the same
    # lines in the same folders (accepted by event hour, rejections by the load's hour)
    records = [p for p in sent if p.strip()]
    expected = deliver(
        records, ORDERS, tmp_path, stream="backfill", arrival=NOW, arrivals=arrivals(records, ORDERS, NOW)
    )
    local = {
        path.relative_to(tmp_path).as_posix(): gzip.decompress(path.read_bytes()) for path in expected.objects
    }
    written = _objects(s3)
    assert _by_folder(written) == _by_folder(local)
    assert {k.split("/")[0] for k in written} == {"orders", "orders_rejected"}
    # AND each chunk has objects of its own, named for the load and the chunk
    chunks = {k.rsplit("/", 1)[1].split(".")[0].rsplit("-", 1)[1] for k in written}
    assert chunks == {f"{n:05d}" for n in range(5)}  # 500 records less the blank ones, 120 a chunk
    assert len(lines) == 5 + 3 and lines[-2].startswith("the next pipeline run of orders curates")
    assert lines[-1].endswith(":stateMachine:lake-tst-orders-pipeline")
    assert done.days == {k.split("/", 1)[1].rsplit("/", 2)[0] for k in written if k.startswith("orders/")}
    # AND a second load of the same file overwrites nothing: its objects are new ones
    again = backfill(
        s3, io.BytesIO(text), bucket=RAW, dataset=ORDERS, chunk_records=120, now=NOW, report=lambda _: None
    )
    assert len(_objects(s3)) == len(written) + again.objects


def test_a_loaded_record_counts_as_ingested_at_its_event_time_so_a_later_live_one_wins(s3: Any) -> None:
    # GIVEN an order from history, one from the future (a producer's clock), and one refused, in
    # a file with Windows line ends
    def order(order_id: str, ts: str, **fields: Any) -> bytes:
        return json.dumps(
            {"order_id": order_id, "customer_id": "c-1", "order_ts": ts, "amount": "5.00", **fields}
        ).encode()

    refused = order("h-3", "2023-01-15T08:00:00Z", status="LOST")
    text = b"".join(
        line + b"\r\n"
        for line in (order("h-1", "2023-01-15T08:00:00+09:00"), order("h-2", "2031-01-01T00:00:00Z"), refused)
    )
    # WHEN they are loaded
    backfill(s3, io.BytesIO(text), bucket=RAW, dataset=ORDERS, now=NOW, report=lambda _: None)
    by_id = {}
    for key, body in _objects(s3).items():
        for line in body.decode().splitlines():
            document = json.loads(line)
            by_id[document.get("order_id") or json.loads(document["raw_text"])["order_id"]] = (key, document)
    # THEN each is in the UTC hour of its event time, from the "backfill" stream, ingested at its
    # event time: a version that came live after it is ingested later and wins in the job
    key, h1 = by_id["h-1"]
    assert key.startswith("orders/year=2023/month=01/day=14/hour=23/backfill-")
    assert (h1["source_stream"], h1["ingested_at"]) == ("backfill", "2023-01-14T23:00:00.000Z")
    # AND one whose event is later than the load counts as ingested at the load
    assert by_id["h-2"][1]["ingested_at"] == "2026-12-07T09:30:00.000Z"
    # AND a refused one is filed under the load's hour, with its reasons
    key, h3 = by_id["h-3"]
    assert key.startswith("orders_rejected/year=2026/month=12/day=07/hour=09/")
    assert h3["reason"].startswith("status:")
    assert h3["raw_text"] == refused.decode()  # the record as sent, without its line end


def test_records_of_days_past_the_retention_are_left_out_counted_and_named(s3: Any) -> None:
    # GIVEN orders kept 30 days, and a file of two orders of 6 November (past it on 7 December)
    # and one of 7 November (the first day kept)
    kept_30_days = replace(ORDERS, governance=replace(ORDERS.governance, retention_days=30))

    def order(order_id: str, ts: str) -> bytes:
        return json.dumps(
            {"order_id": order_id, "customer_id": "c-1", "order_ts": ts, "amount": "5.00"}
        ).encode()

    text = b"\n".join(
        [
            order("o-1", "2026-11-06T08:00:00Z"),
            order("o-2", "2026-11-06T23:59:59Z"),
            order("o-3", "2026-11-07T00:00:00Z"),
        ]
    )
    lines: list[str] = []
    # WHEN it is loaded on 7 December
    done = backfill(s3, io.BytesIO(text), bucket=RAW, dataset=kept_30_days, now=NOW, report=lines.append)
    # THEN only the order of the day kept is written, and the pipeline is told of its day alone
    written = _objects(s3)
    assert [k.rsplit("/", 2)[0] for k in written] == ["orders/year=2026/month=11/day=07"]
    assert done.days == {"year=2026/month=11/day=07"}
    # AND the two left out are counted with their day, and the report names the retention
    assert (done.ok, done.past_retention, done.past_retention_days) == (3, 2, {"year=2026/month=11/day=06"})
    (left_out,) = [line for line in lines if "left out" in line]
    assert left_out == (
        "2 accepted record(s) of 1 day(s) before 2026-11-07 left out: past the dataset's retention "
        f"(governance.retention_days=30 in {ORDERS.source_file})"
    )


def test_a_dry_run_counts_and_writes_nothing(s3: Any) -> None:
    text = b"\n".join(payloads(50, seed=4))
    done = backfill(
        s3, io.BytesIO(text), bucket=RAW, dataset=ORDERS, dry_run=True, now=NOW, report=lambda _: None
    )
    assert done.ok > 0 and done.objects > 0
    assert _objects(s3) == {}


def test_a_bad_request_is_refused_with_the_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(BackfillError, match="--chunk-records 0: use 1 or more"):
        backfill(None, io.BytesIO(b"{}"), bucket=RAW, dataset=ORDERS, chunk_records=0)
    assert main(["--bucket", RAW, "--dataset", "order", str(tmp_path / "f.jsonl")]) == 1
    assert "backfill: dataset 'order': " in capsys.readouterr().err
    with mock_aws():
        assert main(["--bucket", RAW, "--dataset", "orders", str(tmp_path / "missing.jsonl")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
