"""Erasing a data subject's records from a dataset's raw zone, as the real transform and Firehose
wrote it (the local Firehose), in moto's versioned S3. That the next job run then rebuilds the
curated days without them is tested with the job (test_raw_to_curated)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.dataset import DATASETS_DIR, load_dataset
from datalake.erase import EraseError, Subject, erase, erase_in_object, main, subject_for
from datalake.local_firehose import deliver
from datalake.replay import documents, object_text, payload_of
from datalake.sample import payloads

ORDERS = load_dataset(DATASETS_DIR / "orders.json")
RAW = "lake-tst-raw-123456789012-eu-west-1"  # named as the lake names its raw bucket
SUBJECT = "c-subject"


def _order(order_id: str, customer: str, day: str, **fields: Any) -> bytes:
    record = {
        "order_id": order_id,
        "customer_id": customer,
        "customer_email": f"{customer}@example.com",
        "order_ts": f"2024-05-{day}T10:00:00Z",
        "status": "PAID",
        "currency": "EUR",
        "amount": "10.00",
        "country": "DE",
        "channel": "web",
        "items": [],
        **fields,
    }
    return json.dumps(record).encode()


def _raw_zone(tmp: Path) -> Path:
    """A raw zone as the lake writes it: sample orders, and the subject's records among them on
    two days, rejected (a status not allowed), malformed, and failed in processing."""
    arrival = datetime(2024, 5, 3, 12, tzinfo=UTC)
    theirs = [
        _order("s-1", SUBJECT, "01"),
        _order("s-2", SUBJECT, "02"),
        _order("s-3", SUBJECT, "01", status="LOST"),
        b'{"order_id": "s-4", "customer_id": "c-subject", "amount": ',  # cut short
    ]
    sent = payloads(300, seed=11)
    deliver([*sent[:150], *theirs, *sent[150:]], ORDERS, tmp, arrival=arrival)
    # a batch whose response outgrew the limit after the first records: Firehose's error objects
    deliver(
        [
            *payloads(3, seed=5, defects=False),
            _order("s-5", SUBJECT, "02"),
            *payloads(3, seed=6, defects=False),
        ],
        ORDERS,
        tmp,
        arrival=arrival,
        object_name="late",
        max_response_bytes=2000,
    )
    return tmp


def _records(key: str, body: bytes) -> list[tuple[str, bytes]]:
    """(how the record is kept, the record as text): a raw line, or a document's original bytes."""
    text = object_text(body)
    if key.startswith("orders/"):
        return [("line", line.encode()) for line in text.splitlines(keepends=True)]
    return [("document", payload_of(d)) for _, _, d in documents(text)]


def _is_theirs(record: bytes) -> bool:
    try:
        parsed = json.loads(record)
    except ValueError:
        return b'"c-subject"' in record
    return isinstance(parsed, dict) and parsed.get("customer_id") == SUBJECT


def _dataset_records(objects: dict[str, tuple[bytes, str]]) -> dict[str, list[tuple[str, bytes]]]:
    """The records of each object of the orders dataset (not of ``orders_archive/``)."""
    return {k: _records(k, body) for k, (body, _) in objects.items() if not k.startswith("orders_archive/")}


def _bucket(s3: Any) -> dict[str, tuple[bytes, str]]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=RAW).get("Contents", [])]
    out = {}
    for key in keys:
        got = s3.get_object(Bucket=RAW, Key=key)
        out[key] = (got["Body"].read(), got["VersionId"])
    return out


@pytest.fixture
def s3(tmp_path: Path) -> Any:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_bucket_versioning(Bucket=RAW, VersioningConfiguration={"Status": "Enabled"})
        root = _raw_zone(tmp_path / "raw")
        for path in root.rglob("*"):
            if path.is_file():
                client.put_object(Bucket=RAW, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
        # another dataset's object, whose prefix starts with this one's name
        client.put_object(Bucket=RAW, Key="orders_archive/x.json", Body=_order("s-9", SUBJECT, "01"))
        yield client


def test_every_record_of_the_subject_goes_and_every_other_stays_byte_for_byte(s3: Any) -> None:
    # GIVEN the subject's records in the raw zone: accepted on two days, rejected, malformed and
    # in Firehose's error objects
    before = _bucket(s3)
    records = _dataset_records(before)
    theirs = Counter(k.split("/")[0] for k, rs in records.items() for _, r in rs if _is_theirs(r))
    assert theirs == {"orders": 2, "orders_rejected": 2, "errors": 1}
    subject = subject_for("orders", "customer_id", [SUBJECT])
    # WHEN a dry run counts them, THEN it writes nothing
    counted = erase(s3, bucket=RAW, dataset="orders", subject=subject, dry_run=True, report=lambda _: None)
    assert _bucket(s3) == before
    # WHEN they are erased
    lines: list[str] = []
    done = erase(s3, bucket=RAW, dataset="orders", subject=subject, report=lines.append)
    after = _bucket(s3)
    # THEN none is left, every other record is where it was, in its order, byte for byte
    assert (done.records, counted.records) == (5, 5)
    kept = {k: [r for r in rs if not _is_theirs(r[1])] for k, rs in records.items()}
    assert {k: _records(k, after[k][0]) for k in records} == kept
    # AND only the objects that held them were written (a new version), gzip still
    rewritten = {k for k in before if after[k][1] != before[k][1]}
    assert rewritten == {k for k, rs in records.items() if any(_is_theirs(r) for _, r in rs)}
    assert done.objects_rewritten == counted.objects_rewritten == len(rewritten) == 4
    assert all(after[k][0][:2] == b"\x1f\x8b" for k in rewritten)
    # AND the days to be rebuilt are the days of the raw objects written, as the report says
    assert done.days == {"year=2024/month=05/day=01", "year=2024/month=05/day=02"}
    assert lines[-2:] == [
        "the next pipeline run of orders rebuilds 2 day(s) without them: "
        "year=2024/month=05/day=01, year=2024/month=05/day=02",
        "to start it now: aws stepfunctions start-execution --region eu-west-1 --state-machine-arn "
        "arn:aws:states:eu-west-1:123456789012:stateMachine:lake-tst-orders-pipeline",
    ]
    # AND another dataset's objects are not this request's
    assert after["orders_archive/x.json"] == before["orders_archive/x.json"]
    # AND a second run finds nothing: the request can be run again after a failure
    again = erase(s3, bucket=RAW, dataset="orders", subject=subject, report=lambda _: None)
    assert (again.records, again.objects_rewritten) == (0, 0)


def test_an_object_of_the_subject_alone_is_written_back_empty_and_old_versions_can_be_purged(s3: Any) -> None:
    # GIVEN an hour's object that holds only the subject's records
    key = "orders/year=2024/month=05/day=04/hour=10/only.json.gz"
    s3.put_object(Bucket=RAW, Key=key, Body=gzip.compress(_order("s-6", SUBJECT, "04") + b"\n"))
    untouched = "orders/year=2024/month=05/day=04/hour=11/other.json.gz"
    s3.put_object(Bucket=RAW, Key=untouched, Body=gzip.compress(_order("o-6", "c-other", "04") + b"\n"))
    # and an object of two versions whose name begins with the first one's
    longer = f"{key}.copy"
    for version in ("o-7", "o-8"):
        s3.put_object(Bucket=RAW, Key=longer, Body=gzip.compress(_order(version, "c-other", "04") + b"\n"))
    # WHEN the subject is erased, with the earlier versions purged
    done = erase(
        s3,
        bucket=RAW,
        dataset="orders",
        subject=Subject("customer_id", frozenset({SUBJECT})),
        purge_versions=True,
        report=lambda _: None,
    )
    # THEN the object is still there, empty: deleted, its day would not be seen as changed and
    # would keep the subject's curated rows
    assert gzip.decompress(s3.get_object(Bucket=RAW, Key=key)["Body"].read()) == b""
    assert "year=2024/month=05/day=04" in done.days
    # AND no earlier version of a rewritten object is left; an object not written keeps its own
    versions = s3.list_object_versions(Bucket=RAW, Prefix="orders/year=2024/month=05/day=04/")["Versions"]
    assert Counter(v["Key"] for v in versions) == {key: 1, untouched: 1, longer: 2}
    assert done.versions_purged == done.objects_rewritten == 5


def test_a_record_is_matched_by_its_column_and_text_that_is_not_json_by_the_value_as_a_string() -> None:
    subject = Subject("customer_id", frozenset({"c-1"}))
    body = b"".join(
        line + b"\n"
        for line in (
            b'{"order_id": "a", "customer_id": "c-1"}',  # theirs
            b'{"order_id": "b", "customer_id": " c-1 "}',  # theirs, as sent with spaces
            b'{"order_id": "c", "customer_id": "c-10"}',  # another's
            b'{"order_id": "d", "customer_email": "c-1"}',  # the value, in another column
            b'{"order_id": "e", "customer_id": "c-1", "amount": ',  # cut short: named as a string
            b'{"order_id": "f", "note": "c-1x"}',  # not the value as a string
            b'["c-1"]',  # JSON, not an object: named as a string
        )
    )
    kept, erased = erase_in_object(body, subject, documents_of_records=False, name="t")
    assert erased == 4
    assert kept is not None and [json.loads(line)["order_id"] for line in kept.splitlines()] == [
        "c",
        "d",
        "f",
    ]
    # a line that is not UTF-8 (written by other means than the transform) stays, byte for byte
    broken = b'{"order_id": "h", "note": "\xff\xfe"}\n'
    assert erase_in_object(broken + body, subject, documents_of_records=False, name="t") == (broken + kept, 4)
    # the values of a request are taken trimmed, as the records' values are compared
    assert subject_for("orders", "customer_id", [" c-1 ", ""]) == subject
    # text that is not JSON names a value with other than ASCII letters written either way
    named = Subject("customer_id", frozenset({"Jürgen"}))
    cut = [
        '{"customer_id": "J\\u00fcrgen", "amount": \n',  # escaped
        '{"customer_id": "Jürgen", "amount": \n',  # as is
        '{"customer_id": "Jurgen", "amount": \n',  # another's
    ]
    assert erase_in_object("".join(cut).encode(), named, documents_of_records=False, name="t") == (
        cut[2].encode(),
        2,
    )
    # a line holding a line separator (U+2028, which JSON need not escape) is one record
    odd = '{"order_id": "g", "note": "a\u2028b", "customer_id": "c-1"}\n'.encode()
    assert erase_in_object(body + odd, subject, documents_of_records=False, name="t") == (kept, 5)


@pytest.mark.parametrize(
    ("key", "body", "says"),
    [
        (
            "orders/year=2024/month=05/day=09/hour=00/cut.json.gz",
            gzip.compress(b"{}\n", mtime=0)[:-6],
            "cannot be read as text",
        ),
        (
            "orders_rejected/year=2024/month=05/day=09/hour=00/x.json",
            b'{"reason": "a", "raw_base64": "e30="}\n{"reason"',
            "not JSON documents",
        ),
        (
            "errors/orders/year=2024/month=05/day=09/hour=00/x.json",
            b'{"errorCode": "Lambda.X"}\n',
            "holds no record",
        ),
    ],
    # each worker of the suite must name the cases alike: no bytes in the ids
    ids=["gzip-cut-short", "documents-cut-short", "document-without-record"],
)
def test_an_object_the_tool_cannot_read_stops_it_naming_the_object_and_is_left_as_it_is(
    s3: Any, key: str, body: bytes, says: str
) -> None:
    # GIVEN an object under one of the dataset's prefixes that was not written by the lake (a
    # gzip cut short, documents cut short, a document without the record as sent), listed after
    # the objects of the raw zone's own days
    s3.put_object(Bucket=RAW, Key=key, Body=body)
    subject = Subject("customer_id", frozenset({SUBJECT}))
    # WHEN the subject is erased
    with pytest.raises(EraseError) as stopped:
        erase(s3, bucket=RAW, dataset="orders", subject=subject, report=lambda _: None)
    # THEN the tool stops at it, naming it, what is wrong and what to do; it is left as it was
    assert str(stopped.value).startswith(f"s3://{RAW}/{key}: ")
    assert says in str(stopped.value) and "move or fix it, then run again" in str(stopped.value)
    assert s3.get_object(Bucket=RAW, Key=key)["Body"].read() == body
    # AND once it is moved away, a second run erases what the first did not reach and finds the
    # rest already done
    s3.delete_object(Bucket=RAW, Key=key)
    erase(s3, bucket=RAW, dataset="orders", subject=subject, report=lambda _: None)
    assert not any(_is_theirs(r) for rs in _dataset_records(_bucket(s3)).values() for _, r in rs)


@pytest.mark.parametrize(
    ("column", "values", "says"),
    [
        ("customer", ["c-1"], "'customer' is not a top-level column of"),
        ("items", ["c-1"], "'items' is not a top-level column"),
        ("customer_id", [" "], "no value given"),
    ],
)
def test_a_request_the_dataset_file_cannot_answer_is_refused_with_the_fix(
    column: str, values: list[str], says: str
) -> None:
    with pytest.raises(EraseError, match=says):
        subject_for("orders", column, values)


def test_the_command_refuses_an_unknown_dataset_before_it_reads_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--bucket", RAW, "--dataset", "order", "--column", "customer_id", "--value", "c-1"]) == 1
    assert "erase: dataset 'order': " in capsys.readouterr().err
