"""The dataset file and the stages are validated strictly; a bad one stops synth with file, field and fix."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import duckdb
import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Template

from config import Features, StageConfig, features_from_context, get_stage
from config.stages import LOG_RETENTION_DAYS, Lifecycle
from datalake import backtracking
from datalake.backtracking import PROBLEM as BACKTRACKING
from datalake.dataset import (
    DATASETS_DIR,
    PATTERN_FLAGS,
    Column,
    DatasetConfigError,
    Governance,
    Ingestion,
    Processing,
    load_dataset,
    load_datasets,
    longest_dataset_name,
    parse_dataset,
    pattern_for_re2,
    pattern_portability_problem,
)
from datalake.quality import MAX_RULESET, dqdl
from stacks import check_inputs
from stacks.common import log_retention

ORDERS = json.loads((DATASETS_DIR / "orders.json").read_text())


def _broken(mutate: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ORDERS)
    mutate(raw)
    return raw


def _column(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["columns"] if c["name"] == name)


def _run_app(
    root: Path, context: dict[str, str], outdir: Path, *, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CDK app as `cdk synth` runs it: context and output folder from the environment. With
    ``cwd``, the ``app.py`` there and what that folder holds come first, the rest from ``root``."""
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(outdir), PYTHONPATH=str(root))
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=cwd or root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_reference_dataset_loads_with_its_schema() -> None:
    orders = load_dataset(DATASETS_DIR / "orders.json")
    assert orders.record_key == "order_id"
    assert orders.event_time == "order_ts"
    assert orders.pii_columns == ("customer_email", "customer_phone")
    assert orders.column("amount").decimal_precision_scale == (12, 2)
    assert orders.column("status").enum == ("PLACED", "PAID", "SHIPPED", "CANCELLED", "RETURNED")
    assert {n: t for n, t, _ in orders.glue_columns()}["items"] == (
        "array<struct<sku:string,qty:int,unit_price:decimal(12,2)>>"
    )
    assert orders.ingestion.buffer_size_mib == 128
    assert (orders.governance.row_filter_column, orders.governance.row_filter_values) == ("country", ("KR",))


def _problems(raw: Any) -> list[tuple[str, str]]:
    try:
        parse_dataset(raw, "config/datasets/orders.json")
    except DatasetConfigError as err:
        return err.problems
    return []


_DROP = "(removed)"  # a value no dataset file holds, so test ids stay the same between runs


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Sets ``value`` at a dotted ``path`` of a dataset file (a step into a list of columns or
    fields names one); a last step ``+`` appends it, ``*`` updates with it; ``_DROP`` removes."""
    *steps, last = path.split(".")

    def edit(raw: dict[str, Any]) -> None:
        node: Any = raw
        for step in steps:
            node = next(c for c in node if c["name"] == step) if isinstance(node, list) else node[step]
        if last == "+":
            node.append(value)
        elif last == "*":
            node.update(value)
        elif value == _DROP:
            node.pop(last)
        else:
            node[last] = value

    return edit


#: Each rule at the other side of its "or", and each bound one past it: (path, value) of the
#: edit, then the field (``where``) and a piece of the fix that the problem names.
_REFUSED = [
    ("owner", "team-a", "owner", "unknown field; remove it or use one of: columns, description"),
    ("columns.amount.type", "money", "columns[amount].type", "unknown type 'money'"),
    ("governance.pii_columns.+", "customer_name", "governance.pii_columns", "PII flag on 'customer_name'"),
    ("governance.row_filter_values", ["KR'; DROP"], "governance.row_filter_values", "list of plain values"),
    ("governance.row_filter_values", _DROP, "governance.row_filter_values", "give both or neither"),
    ("columns.+", {"name": "status", "type": "string"}, "columns[status]", "duplicate column"),
    ("event_time", "created_at", "event_time", "partition key 'created_at' is not in the schema"),
    ("columns.amount.min", "zero", "columns[amount].min", "must be a number, got 'zero'"),
    ("columns.order_id.max_length", True, "columns[order_id].max_length", "an int >= 1"),
    ("columns.items.items.qty.colour", "red", "columns[items].items[1].colour", "unknown field"),
    ("columns.channel.name", "quarantine_reason", "columns[quarantine_reason]", "is added by the pipeline"),
    ("columns.channel.name", "raw_record", "columns[raw_record]", "'raw_record' is added by the pipeline"),
    (
        "columns.status.max_length",
        6,
        "columns[status].enum",
        "'SHIPPED' is longer than max_length 6; raise it",
    ),
    ("columns.status.pattern", "[A-Z]{4,6}", "columns[status].enum", "'SHIPPED' does not match the pattern"),
    ("columns.country.pattern", "(?i)[a-z]{2}", "columns[country].pattern", "inline flags, (?i)...: only"),
    ("ingestion.buffer_size_mib", 5, "ingestion.buffer_size_mib", "64 to 128 MiB"),
    ("processing.key_lookback_days", "90d", "processing.key_lookback_days", "a whole number of days"),
    ("processing.quality_scope", "partitions", "processing.quality_scope", "use days_written (the days"),
    ("processing.workers", 1, "processing.workers", "2 or more"),
    ("processing.worker_type", ["G.2X"], "processing.worker_type", "use one of G.1X, G.2X"),
    (
        "processing.execution_class",
        "SPOT",
        "processing.execution_class",
        "use STANDARD (runs start at once) or",
    ),
    (
        "processing.*",
        {"execution_class": "FLEX", "worker_type": "G.4X"},
        "processing.execution_class",
        "FLEX runs on G.1X or G.2X workers only, not G.4X",
    ),
    ("processing.timeout_minutes", "2h", "processing.timeout_minutes", "a whole number of minutes from 1"),
    ("columns.channel.name", "Channel", "columns[9].name", "got 'Channel'; use a lower-case identifier"),
    ("columns.channel.name", 7, "columns[9].name", "got 7; use a lower-case identifier"),
    ("columns.channel.name", "c" * 64, "columns[9].name", "at most 63 characters"),
    ("columns.+", "x", "columns[11]", "each column must be an object"),
    ("columns.amount.type", _DROP, "columns[amount].type", "missing; set it to one of"),
    ("columns.amount.type", "decimal(39,2)", "columns[amount].type", "precision must be 1..38"),
    ("columns.amount.type", "decimal(0,0)", "columns[amount].type", "precision must be 1..38"),
    ("columns.amount.type", "decimal(4,5)", "columns[amount].type", "scale <= precision"),
    ("columns.amount.required", "yes", "columns[amount].required", "must be true or false, got 'yes'"),
    ("columns.amount.enum", ["1"], "columns[amount].enum", "enum needs a string column"),
    ("columns.status.enum", "PAID", "columns[status].enum", "a non-empty list"),
    ("columns.status.enum", [], "columns[status].enum", "a non-empty list"),
    ("columns.status.enum", ["PAID", 1], "columns[status].enum", "distinct strings"),
    ("columns.status.enum", ["PAID", "PAID"], "columns[status].enum", "distinct strings"),
    ("columns.customer_id.max", 5, "columns[customer_id].max", "'max' applies to numeric types only"),
    ("columns.amount.max", True, "columns[amount].max", "must be a number, got True"),
    ("columns.amount.*", {"min": 10, "max": 9.99}, "columns[amount].min", "min is greater than max"),
    ("columns.amount.pattern", "^1$", "columns[amount].pattern", "pattern needs a string column"),
    ("columns.country.pattern", 5, "columns[country].pattern", "pattern needs a string column and a regex"),
    ("columns.country.pattern", "[A-Z", "columns[country].pattern", "not a valid regular expression"),
    ("columns.amount.max_length", 5, "columns[amount].max_length", "max_length needs a string column"),
    ("columns.order_id.max_length", 0, "columns[order_id].max_length", "an int >= 1"),
    ("columns.order_id.max_length", 8.5, "columns[order_id].max_length", "an int >= 1"),
    ("columns.amount.comment", 5, "columns[amount].comment", "at most 255 characters"),
    ("columns.amount.comment", "c" * 256, "columns[amount].comment", "at most 255 characters"),
    (
        "columns.status.items",
        [{"name": "a", "type": "int"}],
        "columns[status].items",
        "only applies to type array",
    ),
    (
        "columns.items.fields",
        [{"name": "a", "type": "int"}],
        "columns[items].fields",
        "only applies to type struct",
    ),
    ("columns.items.items", _DROP, "columns[items].items", "type array needs 'items'"),
    ("columns.items.items", [], "columns[items].items", "a non-empty list of field objects"),
    ("columns.+", {"name": "at", "type": "struct"}, "columns[at].fields", "type struct needs 'fields'"),
    (
        "columns.items.items.+",
        {"name": "t", "type": "struct"},
        "columns[items].items[3].type",
        "flatten deeper",
    ),
    (
        "columns.items.items.+",
        {"name": "sku", "type": "int"},
        "columns[items].items[3].name",
        "duplicate field 'sku'",
    ),
    ("columns.items.items.+", {"name": "Sku", "type": "int"}, "columns[items].items[3].name", "got 'Sku'"),
    (
        "columns.items.items.+",
        {"name": "n", "type": "money"},
        "columns[items].items[3].type",
        "unknown type 'money'",
    ),
    ("columns.+", {"name": "year", "type": "int"}, "columns[year]", "'year' is added by the pipeline"),
    (
        "columns.+",
        {"name": "ingested_at", "type": "timestamp"},
        "columns[ingested_at]",
        "added by the pipeline",
    ),
    ("governance.classification", "secret", "governance.classification", "got 'secret'; use one of public"),
    ("governance.pii_columns", "customer_email", "governance.pii_columns", "must be a list of column names"),
    (
        "governance.pii_columns",
        ["customer_email", 1],
        "governance.pii_columns",
        "must be a list of column names",
    ),
    (
        "governance.pii_columns",
        ["order_id"],
        "governance.pii_columns",
        "'order_id' is the record key or event",
    ),
    (
        "governance.pii_columns",
        ["order_ts"],
        "governance.pii_columns",
        "'order_ts' is the record key or event",
    ),
    ("governance.pii_columns", ["customer_email"] * 2, "governance.pii_columns", "a column is listed twice"),
    (
        "governance.row_filter_column",
        "region",
        "governance.row_filter_column",
        "'region' is not a string column",
    ),
    (
        "governance.row_filter_column",
        "amount",
        "governance.row_filter_column",
        "'amount' is not a string column",
    ),
    ("governance.row_filter_values", "KR", "governance.row_filter_values", "must be a list of plain values"),
    ("governance.row_filter_column", _DROP, "governance.row_filter_values", "give both or neither"),
    ("governance", ["pii"], "governance", "must be an object"),
    ("name", "Orders", "name", "got 'Orders'; use a lower-case identifier such as 'orders'"),
    ("name", 5, "name", "got 5; use a lower-case identifier"),
    ("name", "sales", "name", "'sales' differs from the file name; rename the file to sales.json"),
    ("description", 5, "description", "must be a string"),
    ("description", "d" * 1025, "description", "must be a string of at most 1,024 characters"),
    ("description", "Orders\x00", "description", "with no control character but tabs and line breaks"),
    ("description", "Orders \ud800", "description", "with no control character but tabs"),
    ("columns.amount.comment", "Order total\nin currency units.", "columns[amount].comment", "on one line"),
    (
        "columns.amount.comment",
        "Order total\x1b",
        "columns[amount].comment",
        "no line break or other control",
    ),
    ("columns", _DROP, "columns", "missing; list the dataset's columns"),
    ("columns", [], "columns", "missing; list the dataset's columns"),
    ("columns", {"order_id": "string"}, "columns", "missing; list the dataset's columns"),
    ("columns", [], "record_key", "'order_id' is not a column; set it to one of: (no columns)"),
    ("columns.order_id.required", False, "record_key", "column 'order_id' must be a required string"),
    ("record_key", "amount", "record_key", "column 'amount' must be a required string"),
    ("event_time", "order_id", "event_time", "column 'order_id' must be a required timestamp"),
    ("columns.order_ts.required", False, "event_time", "column 'order_ts' must be a required timestamp"),
    ("ingestion.source", "s3", "ingestion.source", "got 's3'; use one of direct_put, kinesis_stream"),
    ("ingestion.buffer_size_mib", 63, "ingestion.buffer_size_mib", "64 to 128 MiB"),
    ("ingestion.buffer_size_mib", 129, "ingestion.buffer_size_mib", "64 to 128 MiB"),
    ("ingestion.buffer_size_mib", "128", "ingestion.buffer_size_mib", "64 to 128 MiB"),
    ("ingestion.buffer_interval_seconds", 59, "ingestion.buffer_interval_seconds", "60 to 900 seconds"),
    ("ingestion.buffer_interval_seconds", 901, "ingestion.buffer_interval_seconds", "60 to 900 seconds"),
    ("ingestion.buffer_interval_seconds", 60.5, "ingestion.buffer_interval_seconds", "60 to 900 seconds"),
    ("ingestion.silent_after_hours", 0, "ingestion.silent_after_hours", "from 1 to 168"),
    ("ingestion.silent_after_hours", 169, "ingestion.silent_after_hours", "from 1 to 168"),
    ("ingestion.silent_after_hours", "6", "ingestion.silent_after_hours", "from 1 to 168"),
    ("processing.schedule", "every hour", "processing.schedule", "use an EventBridge Scheduler expression"),
    ("processing.schedule", "rate(1 week)", "processing.schedule", "use an EventBridge Scheduler expression"),
    ("processing.schedule", 3600, "processing.schedule", "use an EventBridge Scheduler expression"),
    # what a deployment would refuse is refused at synth, with the expression to write instead
    ("processing.schedule", "rate(0 hours)", "processing.schedule", "the value must be 1 or more"),
    ("processing.schedule", "rate(1 hours)", "processing.schedule", "write rate(1 hour)"),
    ("processing.schedule", "rate(5 minute)", "processing.schedule", "write rate(5 minutes)"),
    (
        "processing.schedule",
        "cron(0 6 * * *)",
        "processing.schedule",
        "has 5 fields; a cron expression has six",
    ),
    ("processing.schedule", "cron(0 6 * * MON *)", "processing.schedule", "write cron(0 6 ? * MON *)"),
    ("processing.schedule", "cron(0 6 1 * * *)", "processing.schedule", "write cron(0 6 1 * ? *)"),
    ("processing.schedule", "cron(0 6 1 * MON *)", "processing.schedule", "cannot both be given"),
    ("processing.schedule", "cron(0 6 ? * ? *)", "processing.schedule", "are both ?"),
    ("processing.target_file_size_mib", 15, "processing.target_file_size_mib", "use 16 to 1024"),
    ("processing.target_file_size_mib", 1025, "processing.target_file_size_mib", "use 16 to 1024"),
    ("processing.target_file_size_mib", True, "processing.target_file_size_mib", "use 16 to 1024"),
    ("governance.retention_days", 0, "governance.retention_days", "from 1 to 36,500, or leave it out"),
    ("governance.retention_days", 36501, "governance.retention_days", "from 1 to 36,500"),
    ("governance.retention_days", "365", "governance.retention_days", "a whole number of days"),
    ("governance.retention_days", True, "governance.retention_days", "a whole number of days"),
    ("processing.key_lookback_days", 0, "processing.key_lookback_days", "from 1 to 3660"),
    ("processing.key_lookback_days", 3661, "processing.key_lookback_days", "from 1 to 3660"),
    ("processing.workers", 2.5, "processing.workers", "a whole number of Glue workers"),
    ("processing.worker_type", "G.3X", "processing.worker_type", "got 'G.3X'; use one of G.1X"),
    ("processing.timeout_minutes", 0, "processing.timeout_minutes", "from 1 to 2880"),
    ("processing.timeout_minutes", 2881, "processing.timeout_minutes", "from 1 to 2880"),
    ("processing.stale_after_hours", 169, "processing.stale_after_hours", "from 1 to 168"),
    ("processing.stale_after_hours", -1, "processing.stale_after_hours", "from 1 to 168"),
    ("processing.stale_after_hours", 6.5, "processing.stale_after_hours", "from 1 to 168"),
    # a cron schedule's intervals are not derived: the file names the hours
    (
        "processing.schedule",
        "cron(0 6 * * ? *)",
        "processing.stale_after_hours",
        "cron(...) schedule needs it",
    ),
    # runs a week apart: the alarm's 168 hours would pass between any two runs
    ("processing.schedule", "rate(7 days)", "processing.stale_after_hours", "set it to 0 for no alarm"),
    (
        "processing.*",
        {"schedule": "rate(2 hours)", "stale_after_hours": 2},
        "processing.stale_after_hours",
        "not longer than the time between runs (rate(2 hours))",
    ),
]


@pytest.mark.parametrize(("path", "value", "field", "fix"), _REFUSED, ids=lambda v: repr(v)[:40])
def test_each_rule_of_the_dataset_file_refuses_past_its_bound(
    path: str, value: Any, field: str, fix: str
) -> None:
    # GIVEN the reference dataset with one defect: WHEN parsed, THEN the problem names its field and fix
    problems = _problems(_broken(_edit(path, value)))
    assert any(where == field and fix in why for where, why in problems), problems


def test_a_bad_dataset_file_names_the_file_and_each_field_with_its_fix() -> None:
    # GIVEN the reference dataset with two defects
    raw = _broken(_edit("owner", "team-a"))
    _edit("processing.workers", 1)(raw)
    # WHEN it is parsed, THEN one error names the file, then each field and its fix on a line
    with pytest.raises(DatasetConfigError) as err:
        parse_dataset(raw, "config/datasets/orders.json")
    assert str(err.value).splitlines() == [
        "Invalid dataset file config/datasets/orders.json:",
        *(f"  - {where}: {why}" for where, why in err.value.problems),
    ]
    assert [where for where, _ in err.value.problems] == ["owner", "processing.workers"]


def test_a_column_without_a_type_is_named_once_and_a_file_not_one_object_as_such() -> None:
    # a rule that needs the type does not add a problem of its own when the type is missing
    problems = _problems(_broken(_edit("columns.amount.type", _DROP)))
    assert [where for where, _ in problems] == ["columns[amount].type"], problems
    assert _problems([ORDERS]) == [("(top level)", "the file must hold one JSON object")]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("columns.channel.name", "c" * 63),
        ("columns.amount.*", {"type": "decimal(38,38)", "min": None}),
        ("columns.amount.type", "decimal(1,0)"),
        ("columns.amount.*", {"min": 5, "max": 5}),
        ("columns.amount.*", {"min": -1.5, "max": 10**12}),
        ("columns.customer_email.max_length", 1),
        ("columns.amount.comment", "c" * 255),
        ("description", "d" * 1024),
        ("description", "Orders\n\tas the shop sends them, \U0001f6d2 and 한국어 too.\r\n"),
        ("columns.amount.comment", "Total\tin currency units, \U0001f4b0 and 원 too."),
        ("columns.status.required", False),
        ("columns.+", {"name": "at", "type": "struct", "fields": [{"name": "d", "type": "date"}]}),
        ("governance", {"pii_columns": []}),
        ("governance.retention_days", 1),
        ("governance.retention_days", 36500),
        ("governance", None),
        ("ingestion", {"source": "kinesis_stream", "buffer_size_mib": 64, "buffer_interval_seconds": 60}),
        ("ingestion.*", {"buffer_size_mib": 128, "buffer_interval_seconds": 900}),
        ("ingestion.silent_after_hours", 1),
        ("ingestion.silent_after_hours", 168),
        (
            "processing.*",
            {"schedule": "cron(0/15 * * * ? *)", "target_file_size_mib": 16, "stale_after_hours": 1},
        ),
        ("processing.*", {"schedule": "rate(5 minutes)", "target_file_size_mib": 1024}),
        ("processing.*", {"key_lookback_days": 1, "timeout_minutes": 1}),
        ("processing.*", {"key_lookback_days": 3660, "timeout_minutes": 2880}),
        ("processing.*", {"execution_class": "FLEX", "worker_type": "G.2X", "workers": 2}),
        ("processing.*", {"worker_type": "G.16X", "quality_scope": "table"}),
        ("processing.*", {"schedule": "rate(2 hours)", "stale_after_hours": 3}),
        ("processing.*", {"schedule": "rate(6 days)"}),
        ("processing.*", {"schedule": "rate(7 days)", "stale_after_hours": 0}),
        ("processing.*", {"schedule": "cron(0 6 * * ? *)", "stale_after_hours": 168}),
        ("processing.*", {"schedule": "cron(0 6 * * ? *)", "stale_after_hours": 0}),
        ("processing.*", {"schedule": "cron(0 6 ? * MON-FRI *)", "stale_after_hours": 73}),
        ("processing.*", {"schedule": "cron(0 6 L * ? *)", "stale_after_hours": 0}),
        ("processing.schedule", "rate(1 minute)"),
        ("processing.schedule", "rate(2 days)"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_each_rule_of_the_dataset_file_takes_its_bound(path: str, value: Any) -> None:
    # GIVEN the reference dataset with a value at a rule's edge: WHEN parsed, THEN no problem
    assert _problems(_broken(_edit(path, value))) == []


@pytest.mark.parametrize("section", ["", "columns", "governance", "ingestion", "processing"])
def test_every_field_a_dataset_file_takes_is_named_in_the_guide(section: str) -> None:
    # GIVEN a field the parser does not know, at the top of the file or in a section
    raw = copy.deepcopy(ORDERS)
    target = raw if not section else raw[section][0] if section == "columns" else raw[section]
    target["not_a_field"] = 1
    # WHEN the file is parsed, THEN the error lists the fields there are
    with pytest.raises(DatasetConfigError, match="not_a_field: unknown field") as refused:
        parse_dataset(raw, "orders.json")
    (listed,) = re.findall(r"use one of: ([a-z_, ]+)$", str(refused.value))
    # AND the guide a fork follows names each of them
    guide = (DATASETS_DIR.parent.parent / "docs" / "add-a-dataset.md").read_text()
    assert [f for f in listed.split(", ") if f"`{f}`" not in guide] == []


def test_a_file_of_the_required_fields_alone_takes_the_documented_defaults() -> None:
    # GIVEN a dataset file without governance, ingestion and processing, and columns bare
    raw = {
        "name": "orders",
        "record_key": "order_id",
        "event_time": "order_ts",
        "columns": [
            {"name": "order_id", "type": "string", "required": True},
            {"name": "order_ts", "type": "timestamp", "required": True},
            {"name": "note", "type": "string"},
        ],
    }
    # WHEN it is parsed
    dataset = parse_dataset(raw, "orders.json")
    # THEN each optional setting is its default, as docs/add-a-dataset.md and the issues give it
    assert (dataset.description, dataset.governance) == ("", Governance("internal", (), None, ()))
    assert dataset.ingestion == Ingestion(
        source="direct_put", buffer_size_mib=128, buffer_interval_seconds=900
    )
    assert dataset.processing == Processing(
        schedule="rate(1 hour)",
        target_file_size_mib=128,
        key_lookback_days=None,
        quality_scope="days_written",
        workers=2,
        worker_type="G.1X",
        timeout_minutes=60,
        execution_class="STANDARD",
    )
    # AND a column says only what the file says: the spec the transform and the job get
    assert dataset.to_spec()["columns"] == [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_ts", "type": "timestamp", "required": True},
        {"name": "note", "type": "string"},
    ]
    assert dataset.column("note") == Column(name="note", type="string")


@pytest.mark.parametrize(
    ("pattern", "fix"),
    [
        (r"(?P<cc>[A-Z]{2})", "a named group, (?P<...: only (...) and (?:...) groups"),
        (r"(?!XX)[A-Z]{2}", "a look-ahead, (?!..."),
        (r"(?<=x)y", "a look-behind, (?<=..."),
        (r"([A-Z])\1", r"\1: back references and octal escapes are not portable"),
        (r"\bKR", "word boundaries differ between the engines"),
        (r"[A-Z]{2}\Z", r"drop \Z"),
        (r"\u0041", "write the character itself"),
        (r"[\v]", r"Java reads \v as any vertical space"),
        (r"\한", "write 한 alone"),
        (r"[A-Z]{,2}", "escape it as \\{ (and write {0,m}, not {,m})"),
        (r"a{b}", "escape it as \\{"),
        (r"[A-Z]++", "possessive repetitions"),
        (r"[A-Z]{2}+", "possessive repetitions"),
        (r"[A-Z]++[0-9]", "possessive repetitions"),
        (r"[A-Z]?+1", "possessive repetitions"),
        (r"[A-Z]{2,}+[0-9]", "possessive repetitions"),
        (r"[[:upper:]]", "a [ inside a character class is a nested class in Java"),
        (r"[A-Z&&[^Q]]", "&& in a character class is an intersection in Java"),
        (r"[A-Z[Q]]", "escape it as \\["),
    ],
)
def test_a_pattern_in_syntax_not_every_engine_reads_alike_is_refused(pattern: str, fix: str) -> None:
    # The transform (Python), the job (Java) and the local checks (RE2) would disagree on it, or
    # one of them refuse it at run time: a record passed by one layer and quarantined by the next
    why = pattern_portability_problem(pattern)
    assert why is not None and fix in why
    raw = _broken(lambda r: _column(r, "country").update(pattern=pattern))
    with pytest.raises(DatasetConfigError, match=re.escape(f"columns[country].pattern: {why}")):
        parse_dataset(raw, "orders.json")


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[A-Z]{2}$",
        r"\d+\.\d{2}",
        r"[\w.+-]+@[\w-]+\.[a-z]{2,}",
        r"(?:KR|US)-\d{1,4}?",
        r"[]a]+|[^]\[x]",
        r"\A\x41\t\n\r\f\s\S\D\W\{\}",
        r"a\\b",
        # shapes that read each text one way (no exponential backtracking)
        r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        r"^(?:\d{1,3}\.){3}\d{1,3}$",
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        r"^[\w.+-]+@[\w-]+\.[\w.-]+$",
        r"^(?:[a-z]+\.)*[a-z]+$",
        r"^[A-Z][a-z]*(?: [A-Z][a-z]*)*$",
        r"(?:\w{2}){1,5}",
        r"(?:[A-Z]{2}\d{2}){1,3}",
        r"(a|ab)*",
        r"(?:ab|cd)*",
        r"[\d\w]+",
        r"^\+?[0-9]{7,15}$",
        r"\d+\d+",
        r"(?:x+x+)?y",
        r"^.*$",
    ],
)
def test_a_pattern_in_the_shared_syntax_that_reads_each_text_one_way_is_accepted(pattern: str) -> None:
    assert pattern_portability_problem(pattern) is None
    assert backtracking.growth(pattern) != "exponential"
    column = {"pattern": pattern, "max_length": 64}  # (some need a bound: the next tests)
    assert parse_dataset(_broken(lambda r: _column(r, "country").update(column)), "orders.json")


@pytest.mark.parametrize(
    "pattern",
    [r"\s", r"\S+", r"a\sb", r"[\s]", r"[^\s]", r"[]\s]+", r"[^]\S]+", r"[a\s-]+", r"\\s", r"[\\s]+"],
)
def test_the_local_checks_read_a_space_class_as_the_transform_does(pattern: str) -> None:
    # GIVEN a pattern with \s or \S, which RE2 (DuckDB's regexp_full_match, in the local
    # data-quality checks) reads without the vertical tab that Python's and Java's take
    texts = [chr(i) for i in range(128)] + ["a b", "a\x0bb", "]]", "\\s", "a-", "\u00a0"]
    # WHEN DuckDB matches each text against the pattern as the checks write it
    re2 = pattern_for_re2(pattern)
    matched = (
        duckdb.connect()
        .execute(
            "SELECT list(t ORDER BY i) FILTER (WHERE regexp_full_match(t, ?)) "
            "FROM (SELECT unnest(?::VARCHAR[]) AS t, generate_subscripts(?::VARCHAR[], 1) AS i)",
            [re2, texts, texts],
        )
        .fetchone()
    )
    # THEN it takes the texts Python's re takes, no more and no fewer
    assert matched is not None
    assert (matched[0] or []) == [t for t in texts if re.fullmatch(pattern, t, PATTERN_FLAGS)], re2


@pytest.mark.parametrize(
    "pattern",
    [
        r"\d+\d+",
        r"^[a-z]+[a-z0-9]*$",
        r"\w*\d+",
        r"^\s*\w+\s*\w+$",
        r"^.*a.*$",
        r"(?:x+x+)?y",
        r"^[가-힣]+힣+$",  # characters outside ASCII, named by a range and a literal
    ],
)
def test_a_pattern_that_backtracks_polynomially_needs_a_max_length(pattern: str) -> None:
    # GIVEN a pattern that tries n^2 ways on n characters that almost match (^[a-z]+[a-z0-9]*$:
    # 7 s on 40,000 letters and a !, docs/design-decisions.md), on a column with no max_length
    assert backtracking.growth(pattern) == "polynomial"
    raw = _broken(lambda r: _column(r, "country").update(pattern=pattern))
    # THEN synth asks for the bound the transform checks before the pattern
    with pytest.raises(DatasetConfigError, match=re.escape("columns[country].max_length: missing: ")) as err:
        parse_dataset(raw, "orders.json")
    assert "grows with the square of its length" in str(err.value)
    # and with one, the pattern is accepted
    assert parse_dataset(
        _broken(lambda r: _column(r, "country").update(pattern=pattern, max_length=100)), "orders.json"
    )


def test_a_pattern_the_check_cannot_judge_within_its_budget_needs_a_max_length_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a linear pattern whose judgement takes a step of the triple product, and no steps left
    pattern = r"a+|ba+c"
    assert backtracking.growth(pattern) == "linear"
    monkeypatch.setattr(backtracking, "_TRIPLE_BUDGET", 0)
    assert backtracking.growth(pattern) == "unknown"
    # THEN synth asks for a bound rather than guess, and takes the pattern with one
    raw = _broken(lambda r: _column(r, "country").update(pattern=pattern))
    with pytest.raises(DatasetConfigError, match=re.escape("too large for synth to tell")):
        parse_dataset(raw, "orders.json")
    assert parse_dataset(
        _broken(lambda r: _column(r, "country").update(pattern=pattern, max_length=200)), "orders.json"
    )


def test_a_long_list_of_codes_is_judged_linear() -> None:
    # the triple product, pruned to the pairs two paths reading one text can share, stays small
    code = "(?:" + "|".join(a + b + c for a in "abc" for b in "def" for c in "ghi") + ")"
    assert backtracking.growth(f"^{code}(?:,{code})*$") == "linear"


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[a-z]+[0-9]*$",
        r"^[\w.+-]+@[\w-]+\.[\w.-]+$",
        r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        r"^.*$",
        r"\d+\.\d{2}",
        r"^\s*\S+\s*$",  # the space classes never read the same character
        r"^a{0,16}a{0,16}$",  # bounded counts: at most 17 x 17 ways, whatever the value's length
        r"^(?:[a-z]{16})*$",  # a fixed-width body of 16, spelled out, under a repetition
    ],
)
def test_a_pattern_whose_work_grows_with_the_length_alone_needs_no_max_length(pattern: str) -> None:
    assert backtracking.growth(pattern) == "linear"
    assert parse_dataset(_broken(lambda r: _column(r, "country").update(pattern=pattern)), "orders.json")


def test_a_count_above_16_is_judged_as_a_repetition_without_bound() -> None:
    # Counts up to 16 are spelled out and read one way; a larger one is taken as unbounded, as
    # for (\w+\s?){1,40}: refused even where the count would keep it fast (the module's docstring)
    assert backtracking.growth(r"^(?:a{16})*b$") == "linear"
    assert backtracking.growth(r"^(?:a{17})*b$") == "exponential"


@pytest.mark.parametrize(
    "pattern",
    [
        # OWASP's examples of "evil" regexes, and their e-mail one
        r"^(a+)+$",
        r"([a-zA-Z]+)*",
        r"(a|aa)+",
        r"(a|a?)+",
        r"(.*a){12}",
        r"^(([a-z])+.)+[A-Z]([a-z])+$",
        r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
        # the shapes measured slow in docs/design-decisions.md, and a few more
        r"(?:[a-z0-9]+-?)*",
        r"^(\w+\s?)*$",
        r"(\w+\s?){1,40}",
        r"(?:a|ab?){1,60}",
        r"(a+){2,40}",
        r"(?:\w{1,2})+",
        r"(\d|\w)+",
        r"(a*)*",
        r"(.*)*",
        r"(x+x+)+y",
        r"[A-Z]{2}(?:-?[A-Z0-9]+)*",
    ],
)
def test_a_pattern_that_can_backtrack_exponentially_is_refused(pattern: str) -> None:
    # a value that almost matches would make the transform's or the job's engine try 2^n splits
    assert pattern_portability_problem(pattern) is None
    raw = _broken(lambda r: _column(r, "country").update(pattern=pattern))
    with pytest.raises(DatasetConfigError, match=re.escape(f"columns[country].pattern: {BACKTRACKING}")):
        parse_dataset(raw, "orders.json")


@pytest.mark.parametrize(
    "one_character",
    [
        r"[]a]",
        r"[^]\[x]",
        r"[a\-z]",
        r"[-a]",
        r"[a-]",
        r"[\x41-\x43_]",
        r"[^\d\s]",
        r"\W",
        r".",
        r"\t",
        r"\{",
    ],
)
def test_the_backtracking_check_reads_a_character_as_python_does(one_character: str) -> None:
    # the check parses the pattern itself: a class it misread would hide an overlap from it
    node = backtracking._Parser(one_character).atom()
    for char in [chr(i) for i in range(128)] + ["é", "\u0660"]:
        expected = re.fullmatch(one_character, char, PATTERN_FLAGS) is not None
        assert backtracking._takes(node, char) == expected, (one_character, char)


def test_every_problem_is_reported_at_once() -> None:
    raw = _broken(lambda r: (r.update(owner="x"), _column(r, "amount").update(type="money")))
    with pytest.raises(DatasetConfigError) as err:
        parse_dataset(raw, "orders.json")
    assert [f for f, _ in err.value.problems] == ["owner", "columns[amount].type"]


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text('{"name": "orders",\n  "columns": [}\n')
    with pytest.raises(DatasetConfigError, match=r"orders.json:\n  - line 2 column 15: not valid JSON"):
        load_dataset(path)


def test_malformed_dataset_fails_synth_without_a_stack_trace(tmp_path: Path, root: Path) -> None:
    # GIVEN a datasets folder whose orders file declares a PII column that does not exist
    bad = _broken(lambda r: r["governance"]["pii_columns"].append("customer_name"))
    (tmp_path / "orders.json").write_text(json.dumps(bad))
    # WHEN the CDK app runs as `cdk synth` runs it
    result = _run_app(root, {"datasets_dir": str(tmp_path)}, tmp_path / "out")
    # THEN it stops with one clear message: file, field, fix; no Python or jsii trace
    assert result.returncode == 1
    assert f"error: Invalid dataset file {tmp_path / 'orders.json'}" in result.stderr
    assert "governance.pii_columns: PII flag on 'customer_name', which is not a column" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_name_too_long_for_the_stage_prefix_fails_synth_naming_the_limit(
    tmp_path: Path, root: Path
) -> None:
    # GIVEN a dataset one character longer than the sandbox prefix leaves room for
    name = "o" * (longest_dataset_name("lake-sbx") + 1)
    (tmp_path / f"{name}.json").write_text(json.dumps(_broken(lambda r: r.update(name=name))))
    # WHEN the CDK app runs as `cdk synth` runs it
    result = _run_app(root, {"datasets_dir": str(tmp_path)}, tmp_path / "out")
    # THEN it stops before any construct, naming the file, the resource name and the longest allowed
    assert result.returncode == 1
    assert f"error: Invalid dataset file {tmp_path / name}.json" in result.stderr
    assert (
        f"name: '{name}' has 47 characters: its schedule 'lake-sbx-{name}-pipeline' would have 65, "
        "over the 64 AWS allows; under the stage prefix 'lake-sbx' use at most 46 (and rename the file)"
    ) in result.stderr
    assert "Traceback" not in result.stderr


def test_shipped_sql_over_a_dataset_no_file_declares_fails_synth_naming_each_file(
    tmp_path: Path, root: Path
) -> None:
    # GIVEN a fork's datasets folder without orders.json, and the orders example SQL still shipped
    shutil.copy(root / "tests" / "datasets" / "web_storefront_page_views_by_session_and_pages.json", tmp_path)
    # WHEN the CDK app runs as `cdk synth` runs it
    result = _run_app(root, {"datasets_dir": str(tmp_path)}, tmp_path / "out")
    # THEN it stops, naming every file that reads the missing table, and what to do
    assert result.returncode == 1
    assert "error: Shipped SQL reads curated tables that no dataset file declares" in result.stderr
    for path in sorted((root / "sql").glob("*/*.sql")):
        reads_orders = re.search(r"\b(FROM|JOIN) (curated\.)?orders\b", path.read_text()) is not None
        expected = f"{path.parent.name}/{path.name} reads table 'orders'"
        assert (expected in result.stderr) == reads_orders, path
    assert "delete it, or add the dataset file (config/datasets/<table>.json)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_stage_is_a_clear_error(tmp_path: Path, root: Path) -> None:
    result = _run_app(root, {"stage": "qa"}, tmp_path)
    assert result.returncode == 1
    assert "Unknown stage 'qa'" in result.stderr
    assert "config/stages.py" in result.stderr


_ARN = "arn:aws:iam::123456789012:role/lake-admin"

#: (changes to a stage, the problem named): each one past a bound, or a value ending in a newline
_REFUSED_STAGE_EDITS: list[tuple[dict[str, Any], str]] = [
    ({"prefix": "l"}, "prefix='l': use 2-20 lower-case letters, digits or '-'"),
    ({"prefix": "l" * 21}, "prefix='lllllllllllllllllllll': use 2-20"),
    ({"prefix": "Lake"}, "prefix='Lake': use 2-20"),
    ({"prefix": "1ake"}, "prefix='1ake': use 2-20"),
    ({"prefix": "lake\n"}, "prefix='lake\\n': use 2-20"),
    ({"account": "12345678901"}, "account='12345678901': use a 12-digit account id or None"),
    ({"account": "12345678901\n"}, "account='12345678901\\n': use a 12-digit"),
    ({"account": "\u0661" * 12}, "use a 12-digit account id or None"),
    ({"log_retention_days": 2}, "log_retention_days=2: use one of (1, 3, 5, 7, 14, 30,"),
    ({"alarm_email": "ops@example"}, "alarm_email='ops@example': use an e-mail address or None"),
    ({"alarm_email": "ops@example.com\n"}, "alarm_email='ops@example.com\\n': use an e-mail"),
    ({"notice_email": "data team@example.com"}, "notice_email='data team@example.com': use an e-mail"),
    (
        {"lake_admin_arns": (_ARN, "arn:aws:iam::12345678901:role/x")},
        "lake_admin_arns: 'arn:aws:iam::12345678901:role/x' is not an IAM ARN",
    ),
    ({"lake_admin_arns": (_ARN + "\n",)}, "is not an IAM ARN"),
    (
        {"athena_bytes_scanned_cutoff": 10_000_000 - 1},
        "athena_bytes_scanned_cutoff: Athena's minimum is 10,000,000 bytes (10 MB)",
    ),
    (
        {"redshift_base_rpu": 0},
        "redshift_base_rpu=0: use 4, a multiple of 8 from 8 to 512, or of 32 from 512 to 1024",
    ),
    ({"redshift_base_rpu": 12}, "redshift_base_rpu=12: use 4"),
    ({"redshift_base_rpu": 520}, "redshift_base_rpu=520: use 4"),
    ({"redshift_base_rpu": 1056}, "redshift_base_rpu=1056: use 4"),
    (
        {"redshift_usage_limit_action": "stop"},
        "redshift_usage_limit_action='stop': use log, emit-metric or deactivate",
    ),
    (
        {"monthly_budget_usd": 0},
        "monthly_budget_usd=0: use a whole number of US dollars, 1 or more, or None",
    ),
    ({"monthly_budget_usd": 99.5}, "monthly_budget_usd=99.5: use a whole number of US dollars"),
    ({"monthly_budget_usd": True}, "monthly_budget_usd=True: use a whole number of US dollars"),
    ({"macie_job_frequency": "weekly"}, "macie_job_frequency='weekly': use DAILY, WEEKLY or MONTHLY"),
    (
        {"redshift_refresh_schedule": "cron(0 5 * * *)"},
        "redshift_refresh_schedule: cron(0 5 * * *) has 5 fields; a cron expression has six",
    ),
    (
        {"redshift_refresh_schedule": "daily"},
        "redshift_refresh_schedule: use an EventBridge Scheduler expression",
    ),
    ({"redshift_refresh_stale_hours": -1}, "redshift_refresh_stale_hours=-1: use whole hours up to 168"),
    ({"redshift_refresh_stale_hours": 169}, "redshift_refresh_stale_hours=169: use whole hours up to 168"),
    ({"redshift_refresh_stale_hours": True}, "redshift_refresh_stale_hours=True: use whole hours"),
    (
        {"redshift_refresh_schedule": "rate(3 days)"},
        "redshift_refresh_stale_hours=49: a rate(3 days) refresh leaves 72 hours between two",
    ),
    ({"lf_tag_prefix": "l" * 21}, "lf_tag_prefix='lllllllllllllllllllll': use up to 20 of a-z 0-9 _ . : -"),
    ({"lf_tag_prefix": "Lake_"}, "lf_tag_prefix='Lake_': use up to 20"),
    (
        {"lifecycle": Lifecycle(raw_infrequent_access_after=29)},
        "lifecycle: S3 needs raw_infrequent_access_after >= 30 and below raw_glacier_ir_after",
    ),
    ({"lifecycle": Lifecycle(raw_infrequent_access_after=90)}, "lifecycle: S3 needs"),
    (
        {"lifecycle": Lifecycle(rejected_expire_after=0)},
        "lifecycle.rejected_expire_after: use a whole number",
    ),
    (
        {"lifecycle": Lifecycle(audit_logs_expire_after=0)},
        "lifecycle.audit_logs_expire_after: use a whole number of days, 1 or more",
    ),
    (
        {"destroy_on_removal": False, "lifecycle": Lifecycle(audit_logs_locked_for=-1)},
        "lifecycle.audit_logs_locked_for=-1: use 0 (no Object Lock) or days up to",
    ),
    (
        {
            "destroy_on_removal": False,
            "lifecycle": Lifecycle(audit_logs_expire_after=90, audit_logs_locked_for=91),
        },
        "lifecycle.audit_logs_locked_for=91: use 0 (no Object Lock) or days up to lifecycle.audit_logs_expire_after",
    ),
    (
        {"lifecycle": Lifecycle(audit_logs_locked_for=1)},
        "lifecycle.audit_logs_locked_for: a stage with destroy_on_removal=True cannot lock",
    ),
    (
        {"permissions_boundary": "corp boundary"},
        "permissions_boundary='corp boundary': use the name of a managed policy of the stage's account",
    ),
    ({"permissions_boundary": ""}, "permissions_boundary='': use the name of a managed policy"),
    ({"permissions_boundary": "/corp"}, "permissions_boundary='/corp': use the name"),
    ({"permissions_boundary": "corp\n"}, "permissions_boundary='corp\\n': use the name"),
    ({"permissions_boundary": "p" * 129}, "use the name of a managed policy"),
    (
        {"permissions_boundary": "arn:aws:iam::123456789012:role/corp"},
        "permissions_boundary='arn:aws:iam::123456789012:role/corp': use the name",
    ),
    ({"permissions_boundary": "arn:aws:iam::1234:policy/corp"}, "use the name of a managed policy"),
    (
        {"permissions_boundary": "pb-${AWS::Partition}"},
        "${Qualifier}, ${AWS::AccountId}, ${AWS::Region} are filled in",
    ),
    (
        {"permissions_boundary": "cdk-${Qualifier}-permissions-boundary-${AWS::AccountId}-${AWS::Region}"},
        "permissions_boundary='cdk-${Qualifier}-permissions-boundary-${AWS::AccountId}-${AWS::Region}': "
        "CDK fills ${AWS::AccountId} from the stage's account, which is None; set account=..., or write "
        "the value in the name",
    ),
    (
        {"account": "123456789012", "permissions_boundary": "pb-${AWS::Region}"},
        "CDK fills ${AWS::Region} from the stage's region, which is None",
    ),
    (
        {"permissions_boundary": ("corp",)},
        "permissions_boundary=('corp',): use a policy's name or ARN, or None",
    ),
    (
        {"tags": {"cost center!": "1"}},
        "tags: key 'cost center!': use 1 to 128 letters, digits, spaces or _ . : / = + - @",
    ),
    ({"tags": {"": "1"}}, "tags: key '': use 1 to 128"),
    ({"tags": {"k" * 129: "1"}}, "use 1 to 128 letters"),
    ({"tags": {"AWS:owner": "me"}}, "tags: key 'AWS:owner': the aws: prefix is AWS's own; use another"),
    ({"tags": {"stage": "qa"}}, "tags: key 'stage': the lake sets it itself; use another key"),
    ({"tags": {"dataset": "x"}}, "tags: key 'dataset': the lake sets it itself"),
    ({"tags": {"owner": "v" * 257}}, "of 'owner': use up to 256 letters, digits, spaces or _ . : / = + - @"),
    ({"tags": {"owner": "a;b"}}, "tags: value 'a;b' of 'owner': use up to 256"),
    ({"tags": {"owner": 7}}, "tags: value 7 of 'owner': use up to 256"),
    (
        {"tags": {f"k{i}": "v" for i in range(48)}},
        "tags: 48 tags; a resource takes 50, the lake sets 3: use 47 at most",
    ),
    ({"tags": [("owner", "me")]}, "tags=[('owner', 'me')]: use a dict of tag keys to values"),
    (
        {"producers": {"orders": ("arn:aws:iam::123456789012:user/shop",)}},
        "producers['orders']: 'arn:aws:iam::123456789012:user/shop': use an account id (12 digits), an "
        "account's root ARN (arn:aws:iam::111122223333:root) or a role's ARN "
        "(arn:aws:iam::111122223333:role/shop-backend); a user's long-lived keys should not send to "
        "the lake: give the producer a role",
    ),
    ({"producers": {"orders": ("12345678901",)}}, "producers['orders']: '12345678901': use an account id"),
    ({"producers": {"orders": ("123456789012\n",)}}, "'123456789012\\n': use an account id"),
    ({"producers": {"orders": ("\u0661" * 12,)}}, "use an account id (12 digits)"),
    ({"producers": {"orders": (_ARN + "\n",)}}, "use an account id (12 digits)"),
    ({"producers": {"orders": ("arn:aws:iam::123456789012:role/" + "r" * 65,)}}, "use an account id"),
    ({"producers": {"orders": ("arn:aws:iam::123456789012:role/a b",)}}, "use an account id"),
    ({"producers": {"orders": ("arn:aws:sts::123456789012:assumed-role/shop/s",)}}, "use an account id"),
    ({"producers": {"orders": ("firehose.amazonaws.com",)}}, "use an account id"),
    ({"producers": {"orders": (123456789012,)}}, "producers['orders']: 123456789012: use an account id"),
    (
        {"producers": {"orders": _ARN}},
        f"producers['orders']='{_ARN}': use a tuple of one or more principals, e.g. "
        "{'orders': ('arn:aws:iam::111122223333:role/shop-backend',)}; leave the dataset out for "
        "principals of the stage's own account",
    ),
    ({"producers": {"orders": ()}}, "producers['orders']=(): use a tuple of one or more principals"),
    ({"producers": [("orders", (_ARN,))]}, "use a dict of dataset names to principals, e.g."),
    (
        {
            "producers": {
                "orders": tuple(f"arn:aws:iam::123456789012:role/producer-{i:02d}" for i in range(44))
            }
        },
        "producers['orders']: 44 principals make a trust policy of 2,085 characters, more than the 2,048 "
        "IAM takes: name fewer (an account id trusts the roles that account's own IAM lets assume it)",
    ),
    (
        {"features": Features(quicksight_principal_arn="arn:aws:quicksight:eu-west-1:1:user/default/x")},
        "features.quicksight_principal_arn='arn:aws:quicksight:eu-west-1:1:user/default/x': use a QuickSight user or group ARN",
    ),
]

#: Changes at each bound that a stage takes.
_ACCEPTED_STAGE_EDITS: list[dict[str, Any]] = [
    {"prefix": "lk", "account": "123456789012", "log_retention_days": 1},
    {"prefix": "l" + "-" * 19, "log_retention_days": 3653, "alarm_email": "ops+lake@example.co.uk"},
    {
        "lake_admin_arns": (_ARN, "arn:aws-us-gov:iam::123456789012:user/admin"),
        "notice_email": "data@example.com",
    },
    {"athena_bytes_scanned_cutoff": 10_000_000, "redshift_base_rpu": 4, "monthly_budget_usd": 1},
    {"monthly_budget_usd": None},
    {"redshift_base_rpu": 512, "redshift_usage_limit_action": "log", "macie_job_frequency": "DAILY"},
    {"redshift_base_rpu": 544, "lf_tag_prefix": "l" * 20, "redshift_refresh_schedule": "rate(1 hour)"},
    {"redshift_refresh_schedule": "rate(2 days)", "redshift_refresh_stale_hours": 49},
    {"redshift_refresh_stale_hours": 0},
    {"redshift_refresh_stale_hours": 168},
    {"redshift_base_rpu": 1024, "lf_tag_prefix": "lake_tags.v1:-"},
    {
        "lifecycle": Lifecycle(
            raw_infrequent_access_after=30, raw_glacier_ir_after=31, rejected_expire_after=1
        )
    },
    {"destroy_on_removal": False, "lifecycle": Lifecycle(audit_logs_expire_after=1, audit_logs_locked_for=1)},
    {"permissions_boundary": "corp-boundary"},
    {"permissions_boundary": "boundaries/lake/" + "p" * 128},
    {"permissions_boundary": "cdk-${Qualifier}-permissions-boundary-123456789012-eu-west-1"},
    {
        "account": "123456789012",
        "region": "eu-west-1",
        "permissions_boundary": "cdk-${Qualifier}-permissions-boundary-${AWS::AccountId}-${AWS::Region}",
    },
    {"permissions_boundary": "arn:aws-cn:iam::123456789012:policy/boundaries/corp"},
    {"permissions_boundary": "arn:aws:iam::aws:policy/PowerUserAccess"},
    {
        "tags": {
            "cost-center": "",
            "owner": "Data platform",
            "k" * 128: "v" * 256,
            "a:b/c=d+e-f@g_h.i": "한국",
        }
    },
    {"tags": {f"k{i}": "v" for i in range(47)}},
    {
        "producers": {
            "orders": (
                "123456789012",
                "arn:aws:iam::123456789012:root",
                "arn:aws-cn:iam::123456789012:role/shop-backend",
                "arn:aws:iam::123456789012:role/teams/shop/" + "r" * 64,
                "arn:aws:iam::123456789012:role/a+=,.@_-b",
            ),
            "anything": ["123456789012"],
        }
    },
    {"producers": {"orders": tuple(f"arn:aws:iam::123456789012:role/producer-{i:02d}" for i in range(43))}},
    {
        "features": Features(
            quicksight_principal_arn="arn:aws:quicksight:eu-west-1:123456789012:group/default/bi"
        )
    },
]


@pytest.mark.parametrize(("changes", "problem"), _REFUSED_STAGE_EDITS, ids=lambda v: repr(v)[:40])
def test_a_stage_past_a_bound_is_refused_naming_the_field_and_the_fix(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError) as refused:
        replace(get_stage("sandbox"), **changes)
    message = str(refused.value)
    assert message.startswith("Invalid stage configuration in config/stages.py stage 'sandbox':\n  - ")
    assert problem in message
    assert message.count("\n  - ") == 1  # that problem alone


@pytest.mark.parametrize("changes", _ACCEPTED_STAGE_EDITS, ids=lambda v: repr(v)[:40])
def test_a_stage_at_each_bound_is_taken(changes: dict[str, Any]) -> None:
    assert replace(get_stage("prod"), **changes).name == "prod"


def test_producers_of_a_dataset_no_file_declares_stop_synth_naming_the_datasets() -> None:
    # GIVEN a stage whose producers name a dataset that is not there (a typo, or a file removed)
    stage = replace(get_stage("sandbox"), producers={"order": ("123456789012",), "orders": (_ARN,)})
    # WHEN the app checks its inputs, THEN it stops naming the file, the entry and the datasets
    with pytest.raises(ValueError) as refused:
        check_inputs(stage, load_datasets())
    assert str(refused.value) == (
        "Invalid stage configuration in config/stages.py stage 'sandbox':\n  - producers: no dataset "
        "file declares 'order'; use the name of one of orders, or remove the entry"
    )


def test_a_dataset_whose_quality_ruleset_glue_would_refuse_stops_synth_naming_its_file(
    tmp_path: Path,
) -> None:
    # GIVEN a dataset file of 1,000 columns, each with a rule or two (an enum, a range)
    raw = json.loads((DATASETS_DIR / "orders.json").read_text())
    raw["name"] = "wide"
    raw["columns"] += [
        {"name": f"c{i:04d}", "type": "string", "enum": ["A", "B"]}
        if i % 2
        else {"name": f"c{i:04d}", "type": "int", "min": 0, "max": 9}
        for i in range(1000)
    ]
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(raw))
    wide = load_dataset(path)
    assert len(dqdl(wide)) > MAX_RULESET
    # WHEN the app checks its inputs, THEN it stops naming the file, the ruleset's size and the fix
    with pytest.raises(DatasetConfigError) as refused:
        check_inputs(get_stage("sandbox"), (*load_datasets(), wide))
    assert str(refused.value).startswith(
        f"Invalid dataset file {path}:\n  - columns: the data-quality ruleset"
    )
    assert f"{len(dqdl(wide)):,} characters, more than the 65,536 Glue takes: split the dataset" in str(
        refused.value
    )
    # AND orders' ruleset, as shipped, is far within it
    assert len(dqdl(load_dataset(DATASETS_DIR / "orders.json"))) < MAX_RULESET // 10


def test_every_log_retention_a_stage_takes_is_that_many_days_in_the_template() -> None:
    # GIVEN a log group per retention the stage check accepts
    stack = cdk.Stack(cdk.App(), "Retention")
    for days in LOG_RETENTION_DAYS:
        logs.LogGroup(
            stack,
            f"Logs{days}",
            retention=log_retention(replace(get_stage("sandbox"), log_retention_days=days)),
        )
    # THEN each keeps its logs exactly that many days
    groups = Template.from_stack(stack).find_resources("AWS::Logs::LogGroup")
    assert [g["Properties"]["RetentionInDays"] for g in groups.values()] == list(LOG_RETENTION_DAYS)


def test_every_problem_of_a_stage_is_named_at_once() -> None:
    with pytest.raises(ValueError) as refused:
        StageConfig(name="qa", prefix="QA", account="1", macie_job_frequency="HOURLY")
    problems = str(refused.value).split("\n  - ")
    assert problems[0] == "Invalid stage configuration in config/stages.py stage 'qa':"
    assert [p.split("=")[0] for p in problems[1:]] == ["prefix", "account", "macie_job_frequency"]


def test_a_stage_edited_into_an_invalid_one_stops_synth_with_one_clear_line(
    tmp_path: Path, root: Path
) -> None:
    # GIVEN a fork whose config/stages.py defines a stage that fails its checks
    shutil.copy(root / "app.py", tmp_path)
    shutil.copytree(root / "config", tmp_path / "config", ignore=shutil.ignore_patterns("__pycache__"))
    stages = tmp_path / "config" / "stages.py"
    stages.write_text(stages.read_text().replace('prefix="lake-sbx"', 'prefix="Lake_SBX"'))
    # WHEN the CDK app runs as `cdk synth` runs it (the rest of the project from this checkout)
    result = _run_app(root, {}, tmp_path / "out", cwd=tmp_path)
    # THEN it stops with the file, the stage, the field and the fix, and no Python traceback
    assert result.returncode == 1
    assert result.stderr.startswith("error: Invalid stage configuration in config/stages.py stage 'sandbox':")
    assert "prefix='Lake_SBX': use 2-20 lower-case letters, digits or '-'" in result.stderr
    assert "Traceback" not in result.stderr


def test_features_switch_from_the_command_line() -> None:
    sandbox = get_stage("sandbox")
    arn = "arn:aws:quicksight:eu-west-1:123456789012:group/default/bi"
    every = features_from_context(sandbox, "all", arn).features
    assert every.redshift and every.athena_spark and every.macie and not every.macie_reuse_session
    assert every.quicksight_principal_arn == arn
    some = features_from_context(sandbox, "redshift, macie=off", None).features
    assert some.redshift and not some.macie and some.cloudtrail
    assert features_from_context(sandbox, None, None) is sandbox


def test_unknown_feature_switch_names_the_choices(tmp_path: Path, root: Path) -> None:
    result = _run_app(root, {"features": "redshfit"}, tmp_path)
    assert result.returncode == 1
    assert "'redshfit' is not a switch" in result.stderr and "athena_spark" in result.stderr
    assert "Traceback" not in result.stderr
