"""The Firehose transform: contract for both event shapes, validation, normalization, nothing lost."""

from __future__ import annotations

import base64
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes import LambdaContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records import RecordValidator, cause_of
from transform import MAX_RESPONSE_BYTES, transform_event

from datalake.dataset import DATASETS_DIR, Dataset, load_dataset, parse_dataset
from datalake.local_firehose import INVOCATION_BYTES, deliver, invocation_events
from datalake.sample import payloads as sample_payloads

EVENTS = Path(__file__).parent / "events"
ORDERS = load_dataset(DATASETS_DIR / "orders.json")
VALIDATOR = RecordValidator(ORDERS.to_spec())
NOW = datetime(2024, 5, 1, 1, 0, tzinfo=UTC)


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def _decode(record: dict[str, Any]) -> dict[str, Any]:
    line = base64.b64decode(record["data"]).decode("utf-8")
    assert line.endswith("\n") and line.count("\n") == 1  # newline-delimited JSON, one object
    return json.loads(line)


def _run(event: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    result = transform_event(event, VALIDATOR, now=NOW, fallback_stream="lake-sbx-orders", **kwargs)
    return result, {r["recordId"]: r for r in result.response["records"]}


def _payload(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "order_ts": "2024-05-01T10:00:00Z",
        "amount": "1.00",
    }
    base.update(fields)
    return base


def _event_of(*payloads: Any) -> dict[str, Any]:
    records = []
    for i, p in enumerate(payloads):
        data = p if isinstance(p, bytes) else json.dumps(p).encode()
        records.append({"recordId": f"r{i}", "data": base64.b64encode(data).decode()})
    return {"records": records}


@pytest.mark.parametrize("fixture", ["firehose_direct_put.json", "firehose_kinesis_source.json"])
def test_contract_for_both_event_shapes(fixture: str) -> None:
    # GIVEN a Firehose event with two valid, one invalid, one non-JSON and one non-UTF-8 record
    event = _event(fixture)
    # WHEN it is transformed
    result, out = _run(event)
    # THEN every recordId comes back exactly once, in order, each Ok with base64 data and keys
    assert [r["recordId"] for r in result.response["records"]] == [r["recordId"] for r in event["records"]]
    assert {r["result"] for r in out.values()} == {"Ok"}
    assert (result.ok, result.rejected, result.failed) == (2, 3, 0)
    datasets = [r["metadata"]["partitionKeys"]["dataset"] for r in result.response["records"]]
    assert datasets == ["orders", "orders", "orders_rejected", "orders_rejected", "orders_rejected"]


def test_kinesis_source_is_recorded_as_the_source_stream() -> None:
    _, out = _run(_event("firehose_kinesis_source.json"))
    first = _decode(next(iter(out.values())))
    assert first["source_stream"] == "lake-sbx-orders-source"
    _, out = _run(_event("firehose_direct_put.json"))
    assert _decode(next(iter(out.values())))["source_stream"] == "lake-sbx-orders"


def test_only_records_is_required_at_top_level() -> None:
    # GIVEN an event with no invocationId, deliveryStreamArn or region
    result, out = _run(_event("firehose_minimal.json"))
    # THEN the configured stream name is used and the record is accepted
    assert result.ok == 1
    assert _decode(out["r1"])["source_stream"] == "lake-sbx-orders"


def test_offset_just_after_midnight_lands_in_previous_utc_day() -> None:
    # GIVEN 00:30 in Seoul (+09:00) on 1 May, i.e. 15:30 UTC on 30 April
    _, out = _run(_event_of(_payload(order_ts="2024-05-01T00:30:00+09:00")))
    record = out["r0"]
    # THEN the partition keys and the stored timestamp are the UTC ones
    assert record["metadata"]["partitionKeys"] == {
        "dataset": "orders",
        "year": "2024",
        "month": "04",
        "day": "30",
        "hour": "15",
    }
    assert _decode(record)["order_ts"] == "2024-04-30T15:30:00.000Z"


_ITEM = {"sku": "A", "qty": 1, "unit_price": "1.00"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"order_id": "o" * 64}, None),
        ({"order_id": "o" * 65}, "order_id: longer than 64 characters"),
        ({"amount": "9999999999.99"}, None),
        ({"amount": "10000000000.00"}, "amount: 10000000000.00 does not fit decimal(12,2)"),
        ({"items": [{**_ITEM, "qty": 2147483647}]}, None),
        ({"items": [{**_ITEM, "qty": 2147483648}]}, "items[0].qty: 2147483648 does not fit int"),
        ({"order_ts": "2099-12-31T23:59:59.999Z"}, None),
        (
            {"order_ts": "2100-01-01T00:00:00Z"},
            "order_ts: 2100-01-01T00:00:00.000Z is outside 2000-01-01..2100-01-01",
        ),
        ({"order_ts": "2000-01-01T00:00:00Z"}, None),
        ({"order_ts": "1999-12-31T23:59:59.999Z"}, "order_ts: 1999-12-31T23:59:59.999Z is outside"),
        # in UTC, before the first or after the last day a datetime holds
        ({"order_ts": "0001-01-01T00:00:00+00:01"}, "order_ts: '0001-01-01T00:00:00+00:01' is outside"),
        ({"order_ts": "9999-12-31T23:59:59-00:01"}, "order_ts: '9999-12-31T23:59:59-00:01' is outside"),
    ],
)
def test_each_limit_takes_the_value_at_it_and_refuses_the_next(
    fields: dict[str, Any], reason: str | None
) -> None:
    out, reasons = VALIDATOR.validate(_payload(**fields))
    if reason is None:
        assert (out is not None, reasons) == (True, [])
    else:
        assert out is None and reasons[0].startswith(reason), reasons


def _spec_of(*columns: dict[str, Any]) -> dict[str, Any]:
    """A dataset spec of a key ``k``, an event time ``ts`` and ``columns``."""
    key_and_time = [{"name": "k", "type": "string"}, {"name": "ts", "type": "timestamp"}]
    return {"name": "t", "record_key": "k", "event_time": "ts", "columns": [*key_and_time, *columns]}


_BOUNDED = RecordValidator(
    _spec_of(
        {"name": "s", "type": "string", "max_length": 3},
        {"name": "i", "type": "int"},
        {"name": "g", "type": "bigint"},
        {"name": "upto", "type": "decimal(6,2)", "max": 10},
        {"name": "from", "type": "decimal(6,2)", "min": 0.5},
        {"name": "whole", "type": "decimal(4,0)"},
        {"name": "narrow", "type": "decimal(3,2)"},
        {"name": "b", "type": "boolean"},
        {"name": "d", "type": "date"},
    )
)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        # the general path (a value to normalize) holds each bound as the fast path does
        ("s", " abc ", "abc"),
        ("s", " abcd ", "s: longer than 3 characters"),
        ("i", "2147483647", 2147483647),
        ("i", "-2147483648", -2147483648),
        ("i", "-2147483649", "i: -2147483649 does not fit int"),
        ("g", "-9223372036854775808", -9223372036854775808),
        ("g", "-9223372036854775809", "g: -9223372036854775809 does not fit bigint"),
        ("g", "9223372036854775807", 9223372036854775807),
        ("g", 9223372036854775807, 9223372036854775807),
        ("g", 9223372036854775808, "g: 9223372036854775808 does not fit bigint"),
        ("i", 2147483648, "i: 2147483648 does not fit int"),
        # a number longer than a reason shows: its first 40 characters
        ("i", "1" * 50, f"i: {'1' * 40} does not fit int"),
        ("upto", "10.00", "10.00"),
        ("upto", Decimal("10"), "10.00"),
        ("upto", "10.01", "upto: 10.01 is above the maximum 10"),
        ("from", "0.50", "0.50"),
        ("from", "0.49", "from: 0.49 is below the minimum 0.5"),
        ("whole", "9999", "9999"),
        ("whole", Decimal("9999"), "9999"),
        ("whole", "10000", "whole: 10000 does not fit decimal(4,0)"),
        ("whole", "1.5", "whole: 1.5 has more than 0 decimal places"),
        ("whole", "12.", "12"),  # a point with no decimals is not the canonical form of a scale of 0
        # one digit before the point: a value canonical in shape with two is still too wide
        ("narrow", "9.99", "9.99"),
        ("narrow", "0.5", "0.50"),
        ("narrow", "12.34", "narrow: 12.34 does not fit decimal(3,2)"),
        ("d", " 2024-02-29 ", "2024-02-29"),
        ("d", "2023-02-29", "d: '2023-02-29' is not a date YYYY-MM-DD"),
        ("d", "20240501", "d: '20240501' is not a date YYYY-MM-DD"),
        ("d", 20240501, "d: expected a date YYYY-MM-DD, got a number"),
        ("b", " FALSE ", False),
        ("b", "True", True),
        ("b", "yes", "b: expected true or false, got a string"),
    ],
)
def test_each_bound_holds_for_a_value_to_normalize_too(column: str, value: Any, expected: Any) -> None:
    out, reasons = _BOUNDED.validate({"k": "k", "ts": "2024-05-01T10:00:00Z", column: value})
    if isinstance(expected, str) and expected.startswith(f"{column}: "):
        assert (out, reasons) == (None, [expected])
    else:
        assert out is not None and out[column] == expected, reasons


def test_a_record_lists_its_first_ten_problems_and_a_value_its_first_40_characters() -> None:
    spec = _spec_of(*[{"name": f"c{i}", "type": "string", "enum": ["A"]} for i in range(12)])
    record = {f"c{i}": f"{i:02d}" + "x" * 50 for i in range(12)}
    out, reasons = RecordValidator(spec).validate(record)
    assert out is None
    assert reasons == [f"c{i}: {f'{i:02d}' + 'x' * 38!r} is not one of A" for i in range(10)]


_FOUR_REQUIRED_INTS = [{"name": f"f{i}", "type": "int", "required": True} for i in range(4)]
_NESTED = RecordValidator(
    _spec_of(
        {"name": "st", "type": "struct", "fields": _FOUR_REQUIRED_INTS},
        {"name": "ar", "type": "array", "fields": _FOUR_REQUIRED_INTS},
    )
)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("st", {"f0": 1, "f1": 2, "f2": 3, "f3": "4"}, {"f0": 1, "f1": 2, "f2": 3, "f3": 4}),
        ("st", [], ["st: expected an object, got an array"]),
        (
            "st",
            {"f3": "x"},  # four problems: the first three named, each by its path (as the job does)
            [f"st.f{i}: required field is missing" for i in range(3)],
        ),
        ("ar", [{"f0": 1, "f1": 2, "f2": 3, "f3": "4"}], [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}]),
        ("ar", {}, ["ar: expected an array, got an object"]),
        ("ar", [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}, 5], ["ar[1]: expected an object, got a number"]),
        (
            "ar",
            [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}, {"f0": "x", "f1": True}],
            [
                "ar[1].f0: 'x' is not a number",
                "ar[1].f1: expected a number, got a boolean",
                "ar[1].f2: required field is missing",
            ],
        ),
    ],
)
def test_a_nested_value_is_checked_field_by_field_and_names_its_first_three_problems(
    column: str, value: Any, expected: Any
) -> None:
    out, reasons = _NESTED.validate({"k": "k", "ts": "2024-05-01T10:00:00Z", column: value})
    if isinstance(expected, list) and all(isinstance(e, str) for e in expected):  # the reasons
        assert (out, reasons) == (None, expected)
    else:
        assert out is not None and out[column] == expected, reasons


@pytest.mark.parametrize(("value", "accepted"), [("1e308", True), ("1e309", False), ("-1e309", False)])
def test_a_double_beyond_its_range_either_way_is_refused(value: str, accepted: bool) -> None:
    spec = _spec_of({"name": "x", "type": "double"})
    out, reasons = RecordValidator(spec).validate({"k": "k", "ts": "2024-05-01T10:00:00Z", "x": value})
    assert (out is not None, reasons) == ((True, []) if accepted else (False, ["x: does not fit a double"]))


def test_a_batch_reports_the_first_reason_of_each_rejected_record() -> None:
    result, _ = _run(_event_of(_payload(status="LOST", country="Korea"), _payload(), _payload(order_id=17)))
    assert (result.ok, result.rejected) == (1, 2)
    assert [r.split(":")[0] for r in result.reasons] == ["status", "order_id"]


def test_epoch_milliseconds_are_accepted() -> None:
    _, out = _run(_event_of(_payload(order_ts=1714521600123)))
    assert _decode(out["r0"])["order_ts"] == "2024-05-01T00:00:00.123Z"


def test_naive_timestamp_and_epoch_seconds_are_rejected_with_reasons() -> None:
    result, out = _run(_event_of(_payload(order_ts="2024-05-01T10:00:00"), _payload(order_ts=1714521600)))
    assert result.rejected == 2
    assert "has no UTC offset" in _decode(out["r0"])["reason"]
    assert "outside 2000-01-01..2100-01-01" in _decode(out["r1"])["reason"]


def test_decimals_are_kept_exact_and_strings_trimmed() -> None:
    _, out = _run(
        _event_of(
            _payload(
                amount=12.1,
                customer_id="  c-9  ",
                items=[
                    {"sku": "A", "qty": 3, "unit_price": "0.10"},
                    {"sku": "B", "qty": 1, "unit_price": 19.99},
                ],
            )
        )
    )
    doc = _decode(out["r0"])
    assert doc["amount"] == "12.10"
    assert doc["customer_id"] == "c-9"
    assert [i["unit_price"] for i in doc["items"]] == ["0.10", "19.99"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"amount": "12.345"}, "amount: 12.345 has more than 2 decimal places"),
        ({"amount": -1}, "amount: -1.00 is below the minimum 0"),
        ({"amount": "1e40"}, "amount: 1E+40 does not fit decimal(12,2)"),
        # canonical in shape, but not ASCII digits: the fast path hands it over, the general refuses
        ({"amount": "0.\u0665\u0660"}, "amount: '0.\u0665\u0660' is not a number"),
        ({"amount": "1_000.00"}, "amount: '1_000.00' is not a number"),
        # refused from its exponent, before int() builds a million digits (41 s of CPU before)
        (
            {"items": [{"sku": "A", "qty": "1e1000000", "unit_price": "1"}]},
            "items[0].qty: 1E+1000000 does not fit int",
        ),
        ({"order_ts": "1" * 100_000}, f"order_ts: epoch milliseconds '{'1' * 40}' out of range"),
        (
            {"order_ts": "\u0661\u0667\u0661\u0664\u0665\u0665\u0667\u0666\u0660\u0660\u0660\u0660\u0660"},
            "order_ts: '\u0661\u0667\u0661\u0664\u0665\u0665\u0667\u0666\u0660\u0660\u0660\u0660\u0660' is not an ISO-8601 timestamp",
        ),
        # before the first day a datetime holds once in UTC: refused, not a processing failure
        ({"order_ts": "0001-01-01T00:00:00+01:00"}, "order_ts: '0001-01-01T00:00:00+01:00' is outside 20"),
        ({"order_ts": "2024-05-01T10:00:00"}, "order_ts: '2024-05-01T10:00:00' has no UTC offset"),
        ({"status": "LOST"}, "status: 'LOST' is not one of"),
        ({"country": "Korea"}, "country: 'Korea' does not match"),
        ({"customer_id": None}, "customer_id: required field is missing"),
        ({"customer_id": "   "}, "customer_id: required field is empty"),
        ({"items": [{"sku": "A", "qty": 0, "unit_price": "1"}]}, "items[0].qty: 0 is below the minimum 1"),
        ({"items": {"sku": "A"}}, "items: expected an array, got an object"),
        ({"order_id": 17}, "order_id: expected a string, got a number"),
        ({"order_id": {"id": "o-1"}}, "order_id: expected a string, got an object"),
    ],
)
def test_invalid_fields_are_rejected_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    result, out = _run(_event_of(_payload(**fields)))
    doc = _decode(out["r0"])
    assert result.rejected == 1
    assert reason in doc["reason"], doc["reason"]
    assert out["r0"]["metadata"]["partitionKeys"]["dataset"] == "orders_rejected"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            b"{not json",
            "payload is not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b'{"amount": NaN}', "payload is not JSON: NaN is not allowed"),
        (
            b'\xef\xbb\xbf{"order_id": "o-1"}',
            "payload is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1",
        ),
        (b'{"order_id": "o-1"} {"order_id": "o-2"}', "payload is not JSON: Extra data at line 1 column 21"),
        (b"  \n", "payload is empty"),
        (b"[" * 100_000, "payload nests too deeply"),
        (b'["o-1"]', "expected a JSON object, got an array"),
        (b'{"order_id": ' + b"1" * 5000 + b"}", "payload holds a whole number of more than 4300 digits"),
    ],
    ids=["malformed", "nan", "bom", "two-objects", "empty", "deep", "array", "huge-int"],
)
def test_payloads_that_are_not_one_json_object_are_rejected_with_a_reason(
    payload: bytes, reason: str
) -> None:
    result, out = _run(_event_of(payload))
    doc = _decode(out["r0"])
    assert result.rejected == 1
    assert doc["reason"].startswith(reason), doc["reason"]
    assert base64.b64decode(doc["raw_base64"]) == payload


def test_rejected_record_keeps_the_original_bytes_and_ingest_partition() -> None:
    raw = b"\xff\xfe not utf-8"
    event = {
        "records": [
            {
                "recordId": "x",
                "approximateArrivalTimestamp": 1714521605123,
                "data": base64.b64encode(raw).decode(),
            }
        ]
    }
    _, out = _run(event)
    doc = _decode(out["x"])
    assert base64.b64decode(doc["raw_base64"]) == raw
    assert doc["raw_text"] is None
    assert doc["reason"].startswith("payload is not UTF-8")
    assert doc["ingested_at"] == "2024-05-01T00:00:05.123Z"  # to the millisecond
    assert out["x"]["metadata"]["partitionKeys"]["day"] == "01"


def test_a_lone_surrogate_is_a_rejection_with_its_reason_and_a_pair_one_character() -> None:
    # GIVEN "\ud800"-style escapes (valid JSON, no valid Unicode) in a column and in an unknown
    # field, and a surrogate pair (one emoji)
    lone = _payload(customer_id="c\ud800")
    result, out = _run(_event_of(lone, _payload(note="\udc00"), _payload(customer_id="\U0001f600")))
    # THEN the column's is rejected with the reason and its bytes: the data's fault, not a
    # processing failure; the unknown field is dropped with the rest; the pair is one character
    assert (result.ok, result.rejected, result.failed) == (2, 1, 0)
    doc = _decode(out["r0"])
    assert doc["reason"] == "a value holds '\\ud800', a lone UTF-16 surrogate, which is not valid Unicode"
    assert base64.b64decode(doc["raw_base64"]) == json.dumps(lone).encode()
    assert out["r0"]["metadata"]["partitionKeys"]["dataset"] == "orders_rejected"
    assert _decode(out["r2"])["customer_id"] == "\U0001f600"


def test_data_that_is_not_base64_is_rejected_with_what_arrived() -> None:
    # GIVEN a record whose data is not base64 (Firehose always encodes it; a hand-made test event
    # or a proxy in between may not) beside a valid one
    event = _event_of(_payload())
    event["records"].append({"recordId": "bad", "data": "{not base64}"})
    # WHEN the batch is transformed
    result, out = _run(event)
    # THEN it is a rejection holding the text that arrived, and the other record is curated
    assert (result.ok, result.rejected, result.failed) == (1, 1, 0)
    doc = _decode(out["bad"])
    assert doc["raw_text"] == "{not base64}"
    assert doc["reason"].startswith("payload is not JSON")
    assert out["bad"]["metadata"]["partitionKeys"]["dataset"] == "orders_rejected"


def _bug_for(monkeypatch: pytest.MonkeyPatch, hit: Callable[[str], bool]) -> None:
    """A fault in the transform's own code (a ``KeyError``) for the records whose id ``hit`` takes."""
    import transform

    real = transform.transform_record

    def faulty(validator: RecordValidator, data: bytes, **kwargs: Any) -> Any:
        if hit(kwargs["record_id"]):
            raise KeyError("a bug")
        return real(validator, data, **kwargs)

    monkeypatch.setattr(transform, "transform_record", faulty)


def test_a_bug_on_one_record_fails_that_record_alone_and_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a fault in the transform's own code for one record of three
    _bug_for(monkeypatch, lambda record_id: record_id == "r1")
    # WHEN the batch is transformed
    result, out = _run(
        _event_of(_payload(order_id="o-1"), _payload(order_id="o-2"), _payload(order_id="o-3"))
    )
    # THEN that record is ProcessingFailed (Firehose keeps its bytes under processing-failed/),
    # counted with the kind of fault, and the batch's other records are delivered
    assert [out[r]["result"] for r in ("r0", "r1", "r2")] == ["Ok", "ProcessingFailed", "Ok"]
    assert (result.ok, result.rejected, result.failed) == (2, 0, 1)
    assert result.reasons == ["internal error: KeyError"]
    assert out["r1"].get("data", "") == ""  # no output for it: Firehose keeps the bytes it sent


def test_records_failed_by_a_bug_take_their_room_in_the_response_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a batch whose first 200 records meet a fault in the transform's code, then 100 good
    # ones, each with a record id as long as Firehose's
    _bug_for(monkeypatch, lambda record_id: int(record_id) < 200)
    event = _event_of(*[_payload(order_id=f"o-{i}") for i in range(300)])
    for i, record in enumerate(event["records"]):
        record["recordId"] = f"{i:062d}"
    # WHEN it is transformed with a budget that the good records alone would outgrow
    budget = 50_000
    result, out = _run(event, max_response_bytes=budget)
    # THEN the failed records' entries count against the budget: the response stays within it,
    # the good records fill what is left, and the rest fail for the size limit
    assert len(json.dumps(result.response).encode()) <= budget
    assert 0 < result.ok < 100 and result.failed == 300 - result.ok
    assert result.reasons.count("internal error: KeyError") == 200
    assert len(out) == 300


def test_extra_fields_are_ignored_without_losing_the_record() -> None:
    result, out = _run(_event_of(_payload(promo="SPRING", nested={"a": 1})))
    assert result.ok == 1
    assert "promo" not in _decode(out["r0"])


def test_response_over_the_size_budget_fails_records_instead_of_the_batch() -> None:
    # GIVEN a batch whose output exceeds a (small) response budget
    event = _event_of(*[_payload(order_id=f"o-{i}") for i in range(20)])
    # WHEN it is transformed with room for about five records
    result, out = _run(event, max_response_bytes=5 * 700)
    # THEN the rest are ProcessingFailed (Firehose keeps their bytes) and nothing is missing
    assert len(out) == 20
    assert result.ok + result.failed == 20
    assert 0 < result.ok < 20
    assert result.records_in == 20
    assert all(r["result"] == "ProcessingFailed" for r in list(out.values())[result.ok :])
    # AND the response Lambda returns stays within the budget
    assert len(json.dumps(result.response).encode()) <= 5 * 700


def test_a_batch_of_more_than_6_mb_fills_lambdas_response_up_to_its_limit_and_no_further() -> None:
    # GIVEN a batch of 200 rejected records (each holds its bytes twice: ~50 KB of response), 10 MB
    records = [{**_payload(order_id=f"o-{i}", amount="x"), "note": "n" * 20_000} for i in range(200)]
    event = _event_of(*records)
    # WHEN it is transformed with the default budget
    result, out = _run(event)
    size = len(json.dumps(result.response).encode())
    one = max(len(json.dumps(r).encode()) for r in out.values())
    # THEN the response Lambda returns stays under its 6 MB (6 MiB) limit...
    assert size <= 6 * 1024 * 1024
    # ...yet holds every record that fits within the margin kept for the envelope
    assert size > MAX_RESPONSE_BYTES - 2 * one
    # AND the rest are ProcessingFailed, each counted: all 200 records in
    assert 0 < result.failed < 200 and result.rejected == 200 - result.failed
    assert result.records_in == 200


# --- property-based: arbitrary payloads never break the contract ------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Whole numbers as text, as won and yen are sent, around decimal(12,2)'s ten integer digits.
whole_numbers = st.integers(min_value=-5, max_value=2 * 10**10).map(str)
order_like = st.fixed_dictionaries(
    {},
    optional={
        "order_id": st.one_of(st.text(max_size=70), st.integers(), st.none()),
        "customer_id": st.one_of(st.text(max_size=10), st.none()),
        "order_ts": st.one_of(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.integers(min_value=-(10**15), max_value=10**15),
            st.text(max_size=30),
        ),
        "amount": st.one_of(
            st.decimals(allow_nan=True, places=3).map(str),
            st.integers(),
            whole_numbers,
            st.floats(),
            st.text(max_size=5),
        ),
        "status": st.sampled_from(["PLACED", "PAID", "paid", "", "LOST"]),
        "items": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "sku": st.text(max_size=5),
                    "qty": st.integers(),
                    "unit_price": st.one_of(st.decimals(places=2).map(str), whole_numbers, st.integers()),
                },
            ),
            max_size=3,
        ),
        "extra": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    order_like.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=100_000, alphabet="x").map(lambda t: json.dumps(_payload(customer_email=t)).encode()),
)


@dataclass
class Checked:
    ok: int = 0
    rejected: int = 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, min_size=1, max_size=12))
def test_any_payloads_keep_the_contract(batch: list[bytes]) -> None:
    event = {
        "records": [
            {"recordId": f"id-{i}", "data": base64.b64encode(p).decode()} for i, p in enumerate(batch)
        ]
    }
    result, out = _run(event)
    # each input recordId appears exactly once, with a valid result
    assert [r["recordId"] for r in result.response["records"]] == [f"id-{i}" for i in range(len(batch))]
    assert result.ok + result.rejected + result.failed == len(batch)
    assert result.failed == 0
    for i, payload in enumerate(batch):
        record = out[f"id-{i}"]
        assert record["result"] == "Ok"
        doc = _decode(record)
        keys = record["metadata"]["partitionKeys"]
        if keys["dataset"] == "orders":
            # every Ok record is valid JSON with the required fields and the right partition keys
            for name in ("order_id", "customer_id", "order_ts", "amount"):
                assert doc[name] not in (None, "")
            ts = datetime.fromisoformat(doc["order_ts"].replace("Z", "+00:00"))
            assert keys == {
                "dataset": "orders",
                "year": f"{ts.year:04d}",
                "month": f"{ts.month:02d}",
                "day": f"{ts.day:02d}",
                "hour": f"{ts.hour:02d}",
            }
        else:
            # every rejected record is accounted for, with a reason and its original bytes
            assert keys["dataset"] == "orders_rejected"
            assert doc["reason"]
            assert base64.b64decode(doc["raw_base64"]) == payload


@settings(max_examples=300, deadline=None)
@given(order_like)
def test_fast_path_agrees_with_the_general_path(obj: dict[str, Any]) -> None:
    # The generated fast path may only accept what the general path accepts, with the same output.
    from records import _apply_fields

    fast = VALIDATOR._fast(json.loads(json.dumps(obj), parse_float=Decimal))
    general, errors = _apply_fields(VALIDATOR._fields, json.loads(json.dumps(obj), parse_float=Decimal))
    if fast is not None:
        assert errors == [] and fast == general


def test_fast_path_takes_normalized_records_and_hands_over_the_rest() -> None:
    normalized = {**_payload(), "items": [{"sku": "A", "qty": 2, "unit_price": "1.50"}], "status": "PAID"}
    assert VALIDATOR._fast(normalized) is not None
    for change in ({"customer_id": " c-1"}, {"amount": "1.5"}, {"status": "paid"}, {"items": [{"sku": "A"}]}):
        assert VALIDATOR._fast({**normalized, **change}) is None
    assert VALIDATOR.validate({**normalized, "amount": "1.5"})[0]["amount"] == "1.50"


@pytest.mark.parametrize(
    ("amount", "written"),
    [("2500", "2500.00"), (2500, "2500.00"), ("0", "0.00"), ("9999999999", "9999999999.00"), (0, "0.00")],
)
def test_a_whole_amount_takes_the_fast_path_and_is_written_with_its_zeros(amount: Any, written: str) -> None:
    # won and yen have no minor unit: producers send whole numbers, as text or as JSON numbers
    record = {**_payload(), "amount": amount, "items": [{"sku": "A", "qty": 1, "unit_price": amount}]}
    fast = VALIDATOR._fast(record)
    assert fast is not None and (fast["amount"], fast["items"][0]["unit_price"]) == (written, written)
    assert VALIDATOR.validate(record) == (fast, [])


@pytest.mark.parametrize("amount", ["10000000000", 10**10, "02500", "-1", -1, True, "2500\n"])
def test_a_whole_amount_the_fast_path_cannot_vouch_for_goes_to_the_general_path(amount: Any) -> None:
    assert VALIDATOR._fast({**_payload(), "amount": amount}) is None


@pytest.mark.parametrize("amount", ["1.50", " 1.50", "1.50 ", "1.50\n", "\t1.50\r\n", "1.5\n", 1.5])
def test_a_decimal_is_written_in_its_canonical_form_whatever_surrounds_it(amount: Any) -> None:
    out, reasons = VALIDATOR.validate({**_payload(), "amount": amount})
    assert (out["amount"], reasons) == ("1.50", [])


def _handler(monkeypatch: pytest.MonkeyPatch, dataset: Dataset, root: Path) -> Any:
    """The handler module as Lambda loads it: from the deployment package the CDK construct makes
    for ``dataset`` (its modules and spec), in the environment the construct sets."""
    # (CDK: only here)
    from cdk_constructs.ingestion import METRICS_NAMESPACE, TRANSFORM_SERVICE, stage_transform

    package = stage_transform(dataset, root)
    monkeypatch.setenv("DELIVERY_STREAM_NAME", "lake-sbx-orders")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", TRANSFORM_SERVICE)
    monkeypatch.syspath_prepend(str(package))
    for name in ("handler", "records", "transform"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    handler = importlib.import_module("handler")
    assert Path(handler.__file__).parent == package
    return handler


def test_handler_reads_the_spec_from_its_package_and_emits_metrics(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cdk_constructs.ingestion import METRICS_NAMESPACE, TRANSFORM_SERVICE

    # GIVEN the environment the CDK construct sets
    handler = _handler(monkeypatch, ORDERS, tmp_path)
    # WHEN it handles the Direct PUT fixture
    response = handler.lambda_handler(_event("firehose_direct_put.json"), LambdaContext("transform"))
    # THEN it answers every record and publishes the counts as EMF metrics
    assert len(response["records"]) == 5
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [p for p in printed if "_aws" in p]
    assert emf, "no EMF metrics printed"
    # AND one log line says how many were refused and the commonest causes, with their counts
    (log,) = [p for p in printed if p.get("message") == "records rejected or failed"]
    assert (log["rejected"], log["failed"]) == (3, 0)
    assert sum(n for _, n in log["top_causes"]) == 3 and all(cause for cause, _ in log["top_causes"])
    metrics = emf[-1]
    assert metrics["dataset"] == "orders"
    assert (metrics["RecordsIn"], metrics["RecordsOk"], metrics["RecordsRejected"]) == ([5.0], [2.0], [3.0])
    assert metrics["RecordsProcessingFailed"] == [0.0]
    # AND exactly as the alarms and the dashboard read them (DatasetDeliveryStream.metric_transform):
    # a metric is its namespace, name and whole set of dimensions, so any difference hides it
    (published,) = metrics["_aws"]["CloudWatchMetrics"]
    assert published["Namespace"] == METRICS_NAMESPACE
    assert [sorted(d) for d in published["Dimensions"]] == [["dataset", "service"]]
    assert metrics["service"] == TRANSFORM_SERVICE
    assert {(m["Name"], m["Unit"]) for m in published["Metrics"]} == {
        (name, "Count") for name in ("RecordsIn", "RecordsOk", "RecordsRejected", "RecordsProcessingFailed")
    }
    # AND it read the spec the package holds (the dataset file's)
    assert handler.VALIDATOR.name == "orders"


# --- the local Firehose (datalake/local_firehose.py) that the job, replay and demo tests use -----


def test_the_local_firehose_invokes_with_up_to_1_mib_of_data_in_either_event_shape() -> None:
    # GIVEN payloads whose base64 fills one invocation exactly (2 x 512 KiB), twice, then more
    exact = [b"a" * 393_216, b"b" * 393_216]
    assert sum(len(base64.b64encode(p)) for p in exact) == INVOCATION_BYTES
    sent = [*exact, *exact, b"c" * 3, *(b"d" * 700_000 for _ in range(3))]
    # WHEN the local Firehose batches them
    events = invocation_events(sent, stream="s", arrival=NOW)
    # THEN an invocation holds up to 1 MiB of data and not a byte more, every payload once, in order
    batches = [[base64.b64decode(r["data"]) for r in e["records"]] for e in events]
    d = b"d" * 700_000  # 933,336 bytes of base64: one more does not fit
    assert batches == [exact, exact, [b"c" * 3, d], [d], [d]]
    ids = [r["recordId"] for e in events for r in e["records"]]
    assert ids == sorted(set(ids)) and len(ids) == len(sent)
    # AND every second invocation has the Kinesis-source shape, each record its own sequence number
    assert ["sourceKinesisStreamArn" in e for e in events] == [False, True, False, True, False]
    assert all("kinesisRecordMetadata" not in r for e in events[::2] for r in e["records"])
    assert events[1]["sourceKinesisStreamArn"] == "arn:aws:kinesis:local:000000000000:stream/s-source"
    metadata = [r["kinesisRecordMetadata"] for r in events[1]["records"]]
    assert [m["sequenceNumber"] for m in metadata] == ["00000000010000000000", "00000000010000000001"]
    assert {m["approximateArrivalTimestamp"] for m in metadata} == {int(NOW.timestamp() * 1000)}


@pytest.mark.parametrize(("every", "kinesis"), [(0, "....."), (1, "KKKKK"), (2, ".K.K."), (3, "..K..")])
def test_the_local_firehose_gives_every_nth_invocation_the_kinesis_source_shape(
    every: int, kinesis: str
) -> None:
    events = invocation_events([b"x" * 700_000] * 5, stream="s", arrival=NOW, kinesis_every=every)
    assert "".join("K" if "sourceKinesisStreamArn" in e else "." for e in events) == kinesis


def test_a_local_delivery_counts_each_invocation_and_record_through_the_real_transform(
    tmp_path: Path,
) -> None:
    # GIVEN five valid orders of about 300 KiB each (a long unknown field), and one malformed line
    sent = [json.dumps({**_payload(order_id=f"o-{i}"), "note": "n" * 300_000}).encode() for i in range(5)]
    sent.append(b"{not json")
    # WHEN the local Firehose delivers them: 400 KiB of base64 each, two per invocation
    delivery = deliver(sent, ORDERS, tmp_path, arrival=NOW)
    # THEN each invocation and record is counted, and written where Firehose writes it
    assert (delivery.records_in, delivery.ok, delivery.rejected, delivery.processing_failed) == (6, 5, 1, 0)
    assert delivery.invocations == len(invocation_events(sent, stream="local", arrival=NOW)) == 3
    assert [p.relative_to(tmp_path).as_posix() for p in delivery.objects] == [
        "orders/year=2024/month=05/day=01/hour=10/part.json.gz",
        "orders_rejected/year=2024/month=05/day=01/hour=01/part.json.gz",
    ]


def test_a_record_the_transform_wrote_passes_it_again_unchanged_but_for_its_arrival() -> None:
    # GIVEN the sample orders (items, decimals, PII, optional fields) the transform accepted, as
    # it wrote them: what a Firehose delivery error holds after the transform ran (a partition
    # limit exceeded, say), and what a replay then sends
    first, _ = _run(_event_of(*sample_payloads(200, seed=1)))
    written = [
        base64.b64decode(r["data"])
        for r in first.response["records"]
        if r["metadata"]["partitionKeys"]["dataset"] == "orders"
    ]
    assert len(written) == first.ok > 150
    # WHEN they go through the transform again, later
    later = datetime(2024, 5, 3, tzinfo=UTC)
    again = transform_event(_event_of(*written), VALIDATOR, now=later, fallback_stream="lake-sbx-orders")
    # THEN each is accepted as it was, only newly ingested
    assert (again.ok, again.rejected, again.failed) == (len(written), 0, 0)
    for before, after in zip(written, again.response["records"], strict=True):
        was, now = json.loads(before), _decode(after)
        assert now.pop("ingested_at") == "2024-05-03T00:00:00.000Z" != was.pop("ingested_at")
        assert now == was


def test_the_log_names_the_field_a_record_failed_on_but_never_its_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # GIVEN a PII column with a pattern, and records whose values break it, one in an element
    raw = json.loads((DATASETS_DIR / "orders.json").read_text())
    for column in raw["columns"]:
        if column["name"] == "customer_email":
            column["pattern"] = "^[a-z]+@example[.]org$"
        if column["name"] == "items":
            column["items"][0]["pattern"] = "^SKU-[0-9]+$"
    handler = _handler(monkeypatch, parse_dataset(raw, DATASETS_DIR / "orders.json"), tmp_path)
    email, sku = "kim.private@example.com", "SECRET-SKU"
    event = _event_of(
        _payload(customer_email=email),
        _payload(order_id="o-2", customer_email=email),
        _payload(
            order_id="o-3",
            items=[{"sku": "SKU-1", "qty": 1, "unit_price": "1"}, {"sku": sku, "qty": 1, "unit_price": "1"}],
        ),
    )
    # WHEN the function handles them
    with caplog.at_level("INFO"):
        response = handler.lambda_handler(event, LambdaContext("transform"))
    # THEN its log counts each field that failed, and holds no value of any record (the
    # records as Powertools receives them: message and extra fields)
    (log,) = [r for r in caplog.records if r.getMessage() == "records rejected or failed"]
    assert log.top_causes == [("customer_email", 2), ("items[].sku", 1)]  # type: ignore[attr-defined]
    logged = json.dumps([vars(r) for r in caplog.records], default=str)
    assert "top_causes" in logged
    assert "kim.private" not in logged and sku not in logged
    # AND the rejection documents, bound for the rejected table (tagged pii), keep the reasons whole
    reasons = [_decode(r)["reason"] for r in response["records"]]
    assert reasons[0] == f"customer_email: {email!r} does not match ^[a-z]+@example[.]org$"
    assert reasons[2].startswith(f"items[1].sku: {sku!r}")


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("customer_email: 'kim@x' does not match ^a$", "customer_email"),
        ("items[12].qty: 0 is below the minimum 1", "items[].qty"),
        ("shipping.city: required field is empty", "shipping.city"),
        (
            "payload is not JSON: Expecting ',' delimiter at line 1 column 57",
            "payload is not JSON: Expecting ',' delimiter",
        ),
        ("payload is not UTF-8 (byte 3)", "payload is not UTF-8"),
        ("expected a JSON object, got an array", "expected a JSON object, got an array"),
        ("internal error: KeyError", "internal error: KeyError"),
    ],
)
def test_a_cause_names_the_field_or_the_kind_of_fault_never_a_value_or_a_position(
    reason: str, cause: str
) -> None:
    assert cause_of(reason) == cause
