"""The dataset file is validated strictly; a bad one stops synth with file, field and fix."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import features_from_context, get_stage
from datalake import backtracking
from datalake.backtracking import PROBLEM as BACKTRACKING
from datalake.dataset import (
    DATASETS_DIR,
    PATTERN_FLAGS,
    DatasetConfigError,
    load_dataset,
    longest_dataset_name,
    parse_dataset,
    pattern_portability_problem,
)

ORDERS = json.loads((DATASETS_DIR / "orders.json").read_text())


def _broken(mutate: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ORDERS)
    mutate(raw)
    return raw


def _column(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["columns"] if c["name"] == name)


def _run_app(root: Path, context: dict[str, str], outdir: Path) -> subprocess.CompletedProcess[str]:
    """The CDK app as `cdk synth` runs it: context and output folder from the environment."""
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(outdir))
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=root,
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


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (lambda r: r.update(owner="team-a"), "owner", "unknown field; remove it"),
        (lambda r: _column(r, "amount").update(type="money"), "columns[amount].type", "unknown type 'money'"),
        (
            lambda r: r["governance"]["pii_columns"].append("customer_name"),
            "governance.pii_columns",
            "PII flag on 'customer_name', which is not a column",
        ),
        (
            lambda r: r["governance"].update(row_filter_values=["KR'; DROP"]),
            "governance.row_filter_values",
            "must be a list of plain values",
        ),
        (
            lambda r: r["governance"].pop("row_filter_values"),
            "governance.row_filter_values",
            "give both or neither",
        ),
        (
            lambda r: r["columns"].append({"name": "status", "type": "string"}),
            "columns[status]",
            "duplicate column",
        ),
        (
            lambda r: r.update(event_time="created_at"),
            "event_time",
            "partition key 'created_at' is not in the schema",
        ),
        (lambda r: _column(r, "amount").update(min="zero"), "columns[amount].min", "must be a number"),
        (
            lambda r: _column(r, "order_id").update(max_length=True),
            "columns[order_id].max_length",
            "an int >= 1",
        ),
        (lambda r: r["ingestion"].update(buffer_size_mib=5), "ingestion.buffer_size_mib", "64 to 128 MiB"),
        (
            lambda r: r["processing"].update(key_lookback_days="90d"),
            "processing.key_lookback_days",
            "a whole number of days",
        ),
        (
            lambda r: r["processing"].update(quality_scope="partitions"),
            "processing.quality_scope",
            "use days_written (the days each run wrote) or table",
        ),
        (lambda r: r["processing"].update(workers=1), "processing.workers", "2 or more"),
        (lambda r: r["processing"].update(worker_type=["G.2X"]), "processing.worker_type", "G.1X, G.2X"),
        (
            lambda r: r["processing"].update(execution_class="SPOT"),
            "processing.execution_class",
            "use STANDARD (runs start at once) or FLEX",
        ),
        (
            lambda r: r["processing"].update(execution_class="FLEX", worker_type="G.4X"),
            "processing.execution_class",
            "FLEX runs on G.1X or G.2X workers only, not G.4X",
        ),
        (
            lambda r: r["processing"].update(timeout_minutes="2h"),
            "processing.timeout_minutes",
            "a whole number of minutes from 1 to 2880",
        ),
        (
            lambda r: _column(r, "items")["items"][1].update(colour="red"),
            "columns[items].items[1].colour",
            "unknown field",
        ),
        (
            lambda r: _column(r, "channel").update(name="quarantine_reason"),
            "columns[quarantine_reason]",
            "'quarantine_reason' is added by the pipeline; rename the column",
        ),
        (
            lambda r: _column(r, "channel").update(name="raw_record"),
            "columns[raw_record]",
            "'raw_record' is added by the pipeline; rename the column",
        ),
        (
            lambda r: _column(r, "status").update(max_length=6),
            "columns[status].enum",
            "'SHIPPED' is longer than max_length 6; raise it",
        ),
        (
            lambda r: _column(r, "status").update(pattern="[A-Z]{4,6}"),
            "columns[status].enum",
            "'SHIPPED' does not match the pattern; fix one or the other",
        ),
        (
            lambda r: _column(r, "country").update(pattern="(?i)[a-z]{2}"),
            "columns[country].pattern",
            "inline flags, (?i)...: only (...) and (?:...) groups are portable; rewrite without it",
        ),
    ],
    ids=[
        "unknown-field",
        "unknown-type",
        "pii-missing-column",
        "row-filter-injection",
        "row-filter-unpaired",
        "duplicate-column",
        "partition-key",
        "bad-min",
        "max-length-true",
        "buffer",
        "lookback",
        "quality-scope",
        "workers",
        "worker-type",
        "execution-class",
        "flex-worker-type",
        "timeout",
        "nested-unknown",
        "job-column-reason",
        "job-column-line",
        "enum-longer-than-max-length",
        "enum-outside-pattern",
        "pattern-not-portable",
    ],
)
def test_bad_dataset_names_file_field_and_fix(mutate: Any, field: str, fix: str) -> None:
    # GIVEN the reference dataset with one defect
    raw = _broken(mutate)
    # WHEN it is parsed
    with pytest.raises(DatasetConfigError) as err:
        parse_dataset(raw, "config/datasets/orders.json")
    # THEN the message names the file, the field and the fix
    message = str(err.value)
    assert "config/datasets/orders.json" in message
    assert f"{field}: " in message
    assert fix in message


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
    [r"\d+\d+", r"^[a-z]+[a-z0-9]*$", r"\w*\d+", r"^\s*\w+\s*\w+$", r"^.*a.*$", r"(?:x+x+)?y"],
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
    [r"^[a-z]+[0-9]*$", r"^[\w.+-]+@[\w-]+\.[\w.-]+$", r"^[a-z0-9]+(?:-[a-z0-9]+)*$", r"^.*$", r"\d+\.\d{2}"],
)
def test_a_pattern_whose_work_grows_with_the_length_alone_needs_no_max_length(pattern: str) -> None:
    assert backtracking.growth(pattern) == "linear"
    assert parse_dataset(_broken(lambda r: _column(r, "country").update(pattern=pattern)), "orders.json")


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
