"""The dataset model: one JSON file per dataset under ``config/datasets/`` is the single source of truth.

Everything that describes a dataset elsewhere is derived from this model: the Glue table columns,
the Firehose transform's validation spec, the Spark job's schema, the DQDL ruleset and the
Lake Formation tags. Parsing is strict: an unknown field, an unknown type or an inconsistent file
raises one :class:`DatasetConfigError` that names the file, the field and the fix for every problem.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from datalake import backtracking

#: Where the dataset files live, relative to the repository root.
DATASETS_DIR = Path(__file__).resolve().parent.parent / "config" / "datasets"

SCALAR_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
_DECIMAL_RE = re.compile(r"^decimal\((\d{1,2}),(\d{1,2})\)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CLASSIFICATIONS = ("public", "internal", "pii")
#: Row-filter values end up inside a Lake Formation filter expression: keep them plain.
_SQL_LITERAL_RE = re.compile(r"^[A-Za-z0-9_ -]{1,64}$")
SOURCES = ("direct_put", "kinesis_stream")
#: Partition columns every curated table carries, derived from the event time in UTC.
CURATED_PARTITIONS = ("year", "month", "day")
#: Partition keys the Firehose transform supplies for the raw zone prefix.
RAW_PARTITIONS = ("year", "month", "day", "hour")
_DAY_FOLDER_RE = re.compile(r"(?:^|/)(year=\d{4}/month=\d{2}/day=\d{2})/")


def day_folder(key: str) -> str | None:
    """The ``year=YYYY/month=MM/day=DD`` folder an object key lies under, if any."""
    match = _DAY_FOLDER_RE.search(key)
    return match[1] if match else None


#: Columns the Glue job adds to each row it validates (the reason, and the line of a quarantined
#: row): a dataset column of the same name would make them ambiguous.
JOB_ROW_COLUMNS = ("quarantine_reason", "raw_record")
#: Columns the pipeline adds to every record (name, Glue type, comment).
METADATA_COLUMNS = (
    ("ingested_at", "timestamp", "When the Firehose transform accepted the record (UTC)."),
    ("source_stream", "string", "Name of the delivery or Kinesis stream the record came through."),
)

_TOP_FIELDS = {
    "name",
    "description",
    "record_key",
    "event_time",
    "governance",
    "columns",
    "ingestion",
    "processing",
}
_COLUMN_FIELDS = {
    "name",
    "type",
    "required",
    "enum",
    "min",
    "max",
    "pattern",
    "max_length",
    "comment",
    "items",
    "fields",
}
_GOVERNANCE_FIELDS = {
    "classification",
    "pii_columns",
    "row_filter_column",
    "row_filter_values",
    "retention_days",
}
#: The tag key every resource of one dataset carries, its name the value (its stream, transform,
#: job, crawler, pipeline and their roles), so that Cost Explorer can group by dataset.
DATASET_TAG = "dataset"
#: The longest retention a dataset file may give, in days (a hundred years).
MAX_RETENTION_DAYS = 36_500
#: The longest description a dataset file may give: its raw and curated Glue tables' descriptions
#: hold it with the lake's own words (about 150 characters), and Glue takes 2,048 (TableInput).
MAX_DESCRIPTION = 1024
#: What Glue takes in a column's comment and a table's description (its API's patterns): no
#: control character but a tab, and in a description line breaks too; no lone surrogate.
_GLUE_COMMENT_RE = re.compile("[\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff\t]*")
_GLUE_DESCRIPTION_RE = re.compile("[\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff\t\r\n]*")
_INGESTION_FIELDS = {"source", "buffer_size_mib", "buffer_interval_seconds", "silent_after_hours"}
_PROCESSING_FIELDS = {
    "schedule",
    "target_file_size_mib",
    "key_lookback_days",
    "quality_scope",
    "workers",
    "worker_type",
    "timeout_minutes",
    "execution_class",
    "stale_after_hours",
}
#: Glue worker types for Spark jobs, with the DPUs each worker counts for (billing).
WORKER_DPUS = {"G.1X": 1, "G.2X": 2, "G.4X": 4, "G.8X": 8, "G.12X": 12, "G.16X": 16}
#: Worker types that Glue's flexible execution class runs on (Glue 3.0 and later, Spark jobs).
FLEX_WORKER_TYPES = ("G.1X", "G.2X")
#: Glue's longest timeout for a batch job run, in minutes (48 hours).
MAX_JOB_TIMEOUT_MINUTES = 2880
#: What the data-quality evaluation after a run reads (``Processing.quality_scope``).
QUALITY_SCOPES = ("days_written", "table")
_SCHEDULE_RE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")
_RATE_RE = re.compile(r"^rate\((\d+) (minute|hour|day)s?\)$")
_CRON_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_RATE_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
#: The longest ``Processing.stale_after_hours``: the alarm sums successful runs per hour, and
#: CloudWatch evaluates an alarm over 7 days at most (period times evaluation periods).
MAX_STALE_HOURS = 168


def schedule_problem(schedule: Any) -> str | None:
    """Why ``schedule`` is not an EventBridge Scheduler expression that a deployment would take,
    or ``None``: ``rate(value unit)`` with a positive value and a unit singular for 1 and plural
    otherwise, or ``cron(...)`` of six fields with ``?`` in exactly one of day-of-month and
    day-of-week (EventBridge's rate and cron expression references)."""
    usage = "use an EventBridge Scheduler expression: rate(1 hour), rate(15 minutes) or cron(0 6 * * ? *)"
    if not isinstance(schedule, str) or not _SCHEDULE_RE.match(schedule):
        return usage
    if rate := re.match(r"^rate\((\d+) (\w+)\)$", schedule):
        value, unit = int(rate[1]), rate[2]
        if value < 1:
            return f"{schedule}: the value must be 1 or more; {usage}"
        if (value == 1) != (not unit.endswith("s")):
            fixed = f"rate({value} {unit.rstrip('s') if value == 1 else unit + 's'})"
            return f"{schedule}: the unit is singular for 1 and plural otherwise: write {fixed}"
        return None
    fields = schedule[len("cron(") : -1].split()
    if len(fields) != len(_CRON_FIELDS):
        return (
            f"{schedule} has {len(fields)} fields; a cron expression has six: "
            f"{' '.join(_CRON_FIELDS)}, e.g. cron(0 6 * * ? *) for 06:00 UTC every day"
        )
    day_of_month, day_of_week = fields[2], fields[4]
    if day_of_month == day_of_week == "?":
        return f"{schedule}: day-of-month and day-of-week are both ?; give one of them (* for every day)"
    if "?" not in (day_of_month, day_of_week):
        if "*" not in (day_of_month, day_of_week):
            return f"{schedule}: a day of the month and a day of the week cannot both be given; put ? in one"
        at = 4 if day_of_week == "*" else 2  # the * gives way to the day the other field names
        fixed = " ".join("?" if i == at else f for i, f in enumerate(fields))
        return f"{schedule}: one of day-of-month and day-of-week must be ?: write cron({fixed})"
    return None


def schedule_interval_minutes(schedule: str) -> int | None:
    """Minutes between the runs of a ``rate(...)`` schedule; ``None`` for ``cron(...)``."""
    match = _RATE_RE.match(schedule)
    return int(match[1]) * _RATE_UNIT_MINUTES[match[2]] if match else None


class DatasetConfigError(ValueError):
    """A dataset file is wrong. The message names the file, each bad field and its fix."""

    def __init__(self, path: Path | str, problems: Iterable[tuple[str, str]]):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{field_path}: {fix}" for field_path, fix in self.problems]
        super().__init__(f"Invalid dataset file {self.path}:\n  - " + "\n  - ".join(lines))


@dataclass(frozen=True)
class Column:
    """One column of a dataset, possibly nested (``array`` of structs, ``struct``)."""

    name: str
    type: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    max_length: int | None = None
    comment: str = ""
    #: Fields of the struct (for ``struct``) or of each element (for ``array``).
    children: tuple[Column, ...] = ()

    @property
    def decimal_precision_scale(self) -> tuple[int, int]:
        match = _DECIMAL_RE.match(self.type)
        if match is None:
            raise ValueError(f"{self.name} is not a decimal column")
        return int(match.group(1)), int(match.group(2))

    def glue_type(self) -> str:
        """The Hive/Glue type string, e.g. ``array<struct<sku:string,qty:int>>``."""
        if self.type == "array":
            return f"array<struct<{','.join(f'{c.name}:{c.glue_type()}' for c in self.children)}>>"
        if self.type == "struct":
            return f"struct<{','.join(f'{c.name}:{c.glue_type()}' for c in self.children)}>"
        return self.type

    def to_spec(self) -> dict[str, Any]:
        """The compact form that the Lambda transform and the Glue job receive at runtime."""
        spec: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.required:
            spec["required"] = True
        for key in ("enum", "min", "max", "pattern", "max_length"):
            value = getattr(self, key)
            if value is not None:
                spec[key] = list(value) if key == "enum" else value
        if self.children:
            spec["fields"] = [c.to_spec() for c in self.children]
        return spec


@dataclass(frozen=True)
class Governance:
    """Who may see what: the dataset's classification, its PII columns, a row-filter example."""

    classification: str = "internal"
    pii_columns: tuple[str, ...] = ()
    #: Column of the worked data-cells-filter example (rows limited by its value).
    row_filter_column: str | None = None
    #: Values of ``row_filter_column`` the filter lets through (e.g. ``["KR"]``).
    row_filter_values: tuple[str, ...] = ()
    #: How long the lake keeps an event, in days after its event day: each job run removes the
    #: days older than that from the raw, curated and quarantine zones and from the catalog, and
    #: curates no event that arrives for one. ``None``: kept for good.
    retention_days: int | None = None


@dataclass(frozen=True)
class Ingestion:
    """Firehose settings. Dynamic partitioning needs a buffer of 64 to 128 MiB."""

    source: str = "direct_put"
    buffer_size_mib: int = 128
    buffer_interval_seconds: int = 900
    #: Hours without a single record arriving after which an alarm says the source went silent (a
    #: producer broken or cut off: nothing fails in the lake then, and the pipeline's runs succeed
    #: with nothing new). ``None``: no such alarm, for a source that may rightly be quiet longer
    #: than :data:`MAX_STALE_HOURS`; set it from the quietest hours the source has.
    silent_after_hours: int | None = None


@dataclass(frozen=True)
class Processing:
    """Batch settings for the raw-to-curated job."""

    schedule: str = "rate(1 hour)"
    target_file_size_mib: int = 128
    #: How far (in event days) from the days a run rebuilds the job looks for other versions of
    #: their keys in the curated table. ``None``: the whole table, always correct, and each run
    #: reads every curated key. A number bounds that read for a dataset whose keys change only
    #: within that many days (an order settles in weeks); a version older than that is not found,
    #: and the key then stands on two days.
    key_lookback_days: int | None = None
    #: ``days_written``: the data-quality evaluation after a run reads the days that run wrote,
    #: so its cost follows the run, not the table's age. ``table``: the whole curated table after
    #: every run, which also catches a key whose versions stand on two days further apart than
    #: ``key_lookback_days`` (without a lookback, the job never leaves a key on two days).
    quality_scope: str = "days_written"
    #: Glue workers of the job at most (2 at least; auto scaling runs a small increment on fewer)
    #: and their type: more workers for more data per run, a larger type (G.2X: twice the memory
    #: per executor) for memory-hungry partitions.
    workers: int = 2
    worker_type: str = "G.1X"
    #: Glue stops a job run, and the data-quality evaluation after it, after this long; the
    #: pipeline's own timeout is derived from it (cdk_constructs.processing.pipeline_timeout_minutes).
    timeout_minutes: int = 60
    #: ``STANDARD``: dedicated capacity, the run starts at once. ``FLEX``: Glue's spare capacity at
    #: a lower price per DPU-hour, for a dataset whose curated data may come later: a run may start
    #: late, and its capacity may be reclaimed during the run, which ends it unfinished. The job is
    #: idempotent and an unfinished run records nothing, so the next run redoes its days.
    execution_class: str = "STANDARD"
    #: Hours without a successful pipeline run after which the curated data counts as stale and
    #: an alarm goes to the alert topic: it catches what leaves no failed run behind (a schedule
    #: disabled or deleted, starts dropped, runs stuck before the job). ``None``: derived from a
    #: ``rate(...)`` schedule (two intervals and the pipeline's timeout, at most
    #: :data:`MAX_STALE_HOURS`); a ``cron(...)`` schedule must name it. ``0``: no such alarm.
    stale_after_hours: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    record_key: str
    event_time: str
    columns: tuple[Column, ...]
    governance: Governance = field(default_factory=Governance)
    ingestion: Ingestion = field(default_factory=Ingestion)
    processing: Processing = field(default_factory=Processing)
    source_file: str = ""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return self.governance.pii_columns

    @property
    def non_pii_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.name not in self.governance.pii_columns)

    @property
    def construct_id(self) -> str:
        """The dataset name as CDK construct ids (and so logical ids) carry it: ``PageViews``."""
        return self.name.title().replace("_", "")

    @property
    def quarantine_name(self) -> str:
        """The curated zone's table (and prefix) of the rows the job refused."""
        return f"{self.name}_quarantine"

    @property
    def resource_name(self) -> str:
        """The dataset name as used in resource names (dashes instead of underscores)."""
        return resource_name_of(self.name)

    def to_spec(self) -> dict[str, Any]:
        """The runtime spec shared by the transform and the job (JSON-serialisable)."""
        return {
            "name": self.name,
            "record_key": self.record_key,
            "event_time": self.event_time,
            "columns": [c.to_spec() for c in self.columns],
        }

    def to_spec_json(self) -> str:
        return json.dumps(self.to_spec(), separators=(",", ":"), sort_keys=True)

    def glue_columns(self) -> list[tuple[str, str, str]]:
        """(name, type, comment) of the curated table's data columns, metadata columns last."""
        cols = [(c.name, c.glue_type(), c.comment) for c in self.columns]
        return cols + list(METADATA_COLUMNS)


def _whole(value: Any) -> TypeGuard[int]:
    """A whole number as JSON gives it (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


#: Letter escapes all three engines give the same meaning (the classes ASCII, see
#: :data:`PATTERN_FLAGS`): digits, word and space characters, tab, newline, return, form feed,
#: ``\xhh`` and the start of the value.
_PORTABLE_ESCAPES = frozenset("dDwWsStnrfxA")
_ESCAPE_FIXES = {
    "Z": "the pattern holds for the whole value already: drop \\Z (or write $)",
    "b": "word boundaries differ between the engines: spell the characters out",
    "B": "word boundaries differ between the engines: spell the characters out",
    "v": "Java reads \\v as any vertical space: write \\x0b for the vertical tab",
    "u": "write the character itself; the dataset file is UTF-8",
}
_POSSESSIVE = "possessive repetitions (+ after a repetition) are not portable: drop the +"
#: Groups other than (...) and (?:...), by how they start; the last is the catch-all.
_GROUP_KINDS = (
    ("(?<=", "a look-behind"),
    ("(?<!", "a look-behind"),
    ("(?P<", "a named group"),
    ("(?<", "a named group"),
    ("(?P=", "a back reference"),
    ("(?=", "a look-ahead"),
    ("(?!", "a look-ahead"),
    ("(?#", "a comment"),
    ("(?>", "an atomic group"),
    ("(?(", "a conditional"),
    ("(?", "inline flags"),
)
#: Flags the transform compiles a dataset pattern with: ``\d``, ``\w`` and ``\s`` mean ASCII
#: digits, word and space characters, as they do in Java (the Glue job) and RE2 (the local
#: checks); Python's default would also take other scripts' digits and letters.
PATTERN_FLAGS = re.ASCII


def pattern_portability_problem(pattern: str) -> str | None:
    r"""Why ``pattern`` would not mean the same to the three engines that hold a value to it, or
    ``None``. The Firehose transform runs Python's ``re``, the Glue job Java's
    ``java.util.regex`` and the local data-quality checks DuckDB's RE2; a pattern is allowed when
    it is written in the syntax they share, and read the same by all three:

    * groups are ``(...)`` and ``(?:...)`` only: no named groups, look-arounds, inline flags,
      comments or atomic groups, and no back references;
    * repetitions are ``*``, ``+``, ``?`` and ``{n}``, ``{n,}``, ``{n,m}``, lazy or greedy, never
      possessive; a literal ``{`` is escaped;
    * a ``[`` inside a character class is escaped (Java reads it as a nested class), and no
      ``&&`` (Java's class intersection);
    * escapes are ``\d \D \w \W \s \S \t \n \r \f \xhh \A`` and escaped punctuation.

    ``.`` is left to the job to align: it compiles in Java's UNIX_LINES mode, where ``.`` leaves
    out ``\n`` only, as in Python and RE2. So is ``\s``, to the local checks: RE2's leaves out the
    vertical tab, and they read the pattern through :func:`pattern_for_re2`.
    """
    for i, piece, in_class in _pattern_pieces(pattern):
        if piece.startswith("\\"):
            escaped = piece[1:]
            if escaped.isascii() and escaped.isalnum():
                if escaped.isdigit():
                    return f"\\{escaped}: back references and octal escapes are not portable; use \\x for a character"
                if escaped not in _PORTABLE_ESCAPES or (in_class and escaped == "A"):
                    fix = _ESCAPE_FIXES.get(
                        escaped, "use \\d \\w \\s \\t \\n \\r \\f \\xhh or a character class"
                    )
                    return f"\\{escaped} is not read alike by Python, Java and RE2: {fix}"
            elif not escaped.isascii():
                return f"\\{escaped}: RE2 refuses an escaped letter of another script; write {escaped} alone"
        elif in_class:
            if piece == "[":
                return "a [ inside a character class is a nested class in Java: escape it as \\["
            if pattern.startswith("&&", i):
                return "&& in a character class is an intersection in Java: write the characters out"
        elif piece == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
            start, kind = next((s, k) for s, k in _GROUP_KINDS if pattern.startswith(s, i))
            shown = pattern[i : i + 4] if start == "(?" else start
            return f"{kind}, {shown}...: only (...) and (?:...) groups are portable; rewrite without it"
        elif piece == "{":
            if not (repeat := backtracking.COUNTED_REPETITION.match(pattern, i)):
                return "a { that does not start {n}, {n,} or {n,m} is refused by Java: escape it as \\{ (and write {0,m}, not {,m})"
            if pattern[repeat.end() : repeat.end() + 1] == "+":
                return _POSSESSIVE
        elif piece in ("*", "+", "?") and pattern[i + 1 : i + 2] == "+":
            return _POSSESSIVE
    return None


def _pattern_pieces(pattern: str) -> Iterator[tuple[int, str, bool]]:
    """Each piece of ``pattern`` (an escape, a backslash and what follows it, or one character)
    with where it starts and whether it is inside a character class. A ``^`` right after a
    class's ``[``, and a ``]`` after that, are characters of the class; an escaped ``]`` does not
    close it."""
    in_class = False
    i = 0
    while i < len(pattern):
        piece = pattern[i : i + 2] if pattern[i] == "\\" else pattern[i]
        yield i, piece, in_class
        i += len(piece)
        if in_class:
            in_class = piece != "]"
        elif piece == "[":
            in_class = True
            for literal in ("^", "]"):  # a ] first in the class is the character itself
                if pattern[i : i + 1] == literal:
                    yield i, literal, True
                    i += 1


#: What ``\s`` and ``\S`` become for RE2, outside a class and inside one: its POSIX space class
#: takes the vertical tab, as Python's (ASCII) and Java's ``\s`` do; RE2's own ``\s`` leaves it out.
_RE2_SPACE = {"\\s": ("[[:space:]]", "[:space:]"), "\\S": ("[[:^space:]]", "[:^space:]")}


def pattern_for_re2(pattern: str) -> str:
    r"""A portable pattern (:func:`pattern_portability_problem`) as RE2 reads it alike: each
    ``\s`` and ``\S``, in a class or not, written as RE2's POSIX space class, which takes the
    vertical tab that RE2's ``\s`` leaves out. Everything else is left as it is."""
    return "".join(
        _RE2_SPACE[piece][in_class] if piece in _RE2_SPACE else piece
        for _, piece, in_class in _pattern_pieces(pattern)
    )


def _problem(problems: list[tuple[str, str]], where: str, fix: str) -> None:
    problems.append((where, fix))


def _check_keys(
    obj: Mapping[str, Any], allowed: set[str], where: str, problems: list[tuple[str, str]]
) -> None:
    for key in sorted(set(obj) - allowed):
        _problem(
            problems,
            f"{where}.{key}" if where else key,
            f"unknown field; remove it or use one of: {', '.join(sorted(allowed))}",
        )


def _parse_column(
    raw: Any, where: str, problems: list[tuple[str, str]], nested: bool = False
) -> Column | None:
    if not isinstance(raw, dict):
        _problem(problems, where, "each column must be an object with at least 'name' and 'type'")
        return None
    _check_keys(raw, _COLUMN_FIELDS, where, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        _problem(
            problems,
            f"{where}.name",
            f"got {name!r}; use a lower-case identifier (letters, digits, '_', at most 63 characters)",
        )
        name = str(name)
    where = f"columns[{name}]" if not nested else where
    ctype = raw.get("type")
    valid_types = f"one of {', '.join(SCALAR_TYPES)}, decimal(p,s), array, struct"
    type_known = True
    if not isinstance(ctype, str):
        type_known = False
        _problem(problems, f"{where}.type", f"missing; set it to {valid_types}")
        ctype = "string"
    elif ctype not in SCALAR_TYPES and ctype not in ("array", "struct"):
        match = _DECIMAL_RE.match(ctype)
        if match is None:
            type_known = False
            _problem(problems, f"{where}.type", f"unknown type {ctype!r}; use {valid_types}")
        else:
            precision, scale = int(match.group(1)), int(match.group(2))
            if not 1 <= precision <= 38 or scale > precision:
                _problem(
                    problems,
                    f"{where}.type",
                    f"{ctype}: precision must be 1..38 and scale <= precision",
                )
    if "required" in raw and not isinstance(raw["required"], bool):
        _problem(problems, f"{where}.required", f"must be true or false, got {raw['required']!r}")
    enum = raw.get("enum")
    if enum is not None:
        if ctype != "string" or not isinstance(enum, list) or not enum:
            _problem(problems, f"{where}.enum", "enum needs a string column and a non-empty list")
        elif not all(isinstance(v, str) for v in enum) or len(set(enum)) != len(enum):
            _problem(problems, f"{where}.enum", "enum values must be distinct strings")
    numeric = ctype in ("int", "bigint", "double") or ctype.startswith("decimal(")
    for bound in ("min", "max"):
        value = raw.get(bound)
        if value is None:
            continue
        if type_known and not numeric:
            _problem(problems, f"{where}.{bound}", f"'{bound}' applies to numeric types only")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            _problem(problems, f"{where}.{bound}", f"must be a number, got {value!r}")
    if (
        isinstance(raw.get("min"), (int, float))
        and isinstance(raw.get("max"), (int, float))
        and raw["min"] > raw["max"]
    ):
        _problem(problems, f"{where}.min", "min is greater than max; swap them")
    pattern = raw.get("pattern")
    compiled: re.Pattern[str] | None = None
    growth = "linear"  # of the matchers' work with a value's length (datalake.backtracking)
    if pattern is not None:
        if ctype != "string" or not isinstance(pattern, str):
            _problem(problems, f"{where}.pattern", "pattern needs a string column and a regex")
        elif (why := pattern_portability_problem(pattern)) is not None:
            _problem(problems, f"{where}.pattern", why)
        else:
            try:
                with warnings.catch_warnings():  # a set Python will read otherwise one day
                    warnings.simplefilter("error", FutureWarning)
                    compiled = re.compile(pattern, PATTERN_FLAGS)
            except (re.error, FutureWarning) as exc:
                _problem(problems, f"{where}.pattern", f"not a valid regular expression: {exc}")
            if compiled is not None and (growth := backtracking.growth(pattern)) == "exponential":
                _problem(problems, f"{where}.pattern", backtracking.PROBLEM)
    max_length = raw.get("max_length")
    if max_length is not None and (ctype != "string" or not _whole(max_length) or max_length < 1):
        _problem(problems, f"{where}.max_length", "max_length needs a string column and an int >= 1")
    elif max_length is None and growth in ("polynomial", "unknown"):
        # the transform checks the length first, so a bound keeps the pattern's work small
        why = (
            f"on a value that almost matches, {pattern} tries a number of ways that grows with the "
            "square of its length (or a higher power; a hang for a value of a megabyte)"
            if growth == "polynomial"
            else "the pattern is too large for synth to tell whether its work grows faster than the "
            "value's length"
        )
        _problem(
            problems,
            f"{where}.max_length",
            f"missing: {why}; set max_length to the longest value you expect, which is checked "
            "before the pattern",
        )
    # An allowed value that another rule of the column refuses can never arrive: every record
    # holding it would be rejected, which is a mistake in the file, not in the data.
    if isinstance(enum, list) and all(isinstance(v, str) for v in enum):
        if refused := [v for v in enum if compiled is not None and not compiled.fullmatch(v)]:
            _problem(
                problems, f"{where}.enum", f"{refused[0]!r} does not match the pattern; fix one or the other"
            )
        if _whole(max_length) and (long := [v for v in enum if len(v) > max_length]):
            _problem(
                problems, f"{where}.enum", f"{long[0]!r} is longer than max_length {max_length}; raise it"
            )
    comment = raw.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 255 or not _GLUE_COMMENT_RE.fullmatch(comment):
        _problem(
            problems,
            f"{where}.comment",
            "must be a string of at most 255 characters, on one line (Glue takes no line break or "
            "other control character but a tab in a column's comment)",
        )
        comment = ""
    children: list[Column] = []
    child_key = "items" if ctype == "array" else "fields" if ctype == "struct" else None
    for key in ("items", "fields"):
        if key in raw and key != child_key:
            _problem(
                problems,
                f"{where}.{key}",
                f"'{key}' only applies to type {'array' if key == 'items' else 'struct'}",
            )
    if child_key is not None:
        raw_children = raw.get(child_key)
        if not isinstance(raw_children, list) or not raw_children:
            _problem(
                problems,
                f"{where}.{child_key}",
                f"type {ctype} needs '{child_key}': a non-empty list of field objects",
            )
        else:
            seen: set[str] = set()
            for i, raw_child in enumerate(raw_children):
                child = _parse_column(raw_child, f"{where}.{child_key}[{i}]", problems, nested=True)
                if child is None:
                    continue
                if child.type in ("array", "struct"):
                    _problem(
                        problems,
                        f"{where}.{child_key}[{i}].type",
                        "nested fields must be scalar or decimal; flatten deeper nesting",
                    )
                if child.name in seen:
                    _problem(problems, f"{where}.{child_key}[{i}].name", f"duplicate field {child.name!r}")
                seen.add(child.name)
                children.append(child)
    return Column(
        name=name,
        type=ctype,
        required=raw.get("required") is True,
        enum=tuple(enum) if isinstance(enum, list) else None,
        min=raw.get("min"),
        max=raw.get("max"),
        pattern=pattern if isinstance(pattern, str) else None,
        max_length=max_length if _whole(max_length) else None,
        comment=comment,
        children=tuple(children),
    )


def _parse_section(raw: Any, name: str, allowed: set[str], problems: list[tuple[str, str]]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _problem(problems, name, "must be an object")
        return {}
    _check_keys(raw, allowed, name, problems)
    return {k: v for k, v in raw.items() if k in allowed}


def _parse_governance(
    raw: Any, by_name: Mapping[str, Column], keys: tuple[Any, Any], problems: list[tuple[str, str]]
) -> Governance:
    section = _parse_section(raw, "governance", _GOVERNANCE_FIELDS, problems)
    classification = section.get("classification", "internal")
    if classification not in CLASSIFICATIONS:
        _problem(
            problems,
            "governance.classification",
            f"got {classification!r}; use one of {', '.join(CLASSIFICATIONS)}",
        )
        classification = "internal"
    pii = section.get("pii_columns", [])
    if not isinstance(pii, list) or not all(isinstance(p, str) for p in pii):
        _problem(problems, "governance.pii_columns", "must be a list of column names")
        pii = []
    for name in pii:
        if name not in by_name:
            _problem(
                problems,
                "governance.pii_columns",
                f"PII flag on {name!r}, which is not a column; fix the name or add the column "
                f"(columns: {', '.join(by_name)})",
            )
        elif name in keys:
            _problem(
                problems,
                "governance.pii_columns",
                f"{name!r} is the record key or event time; it cannot be PII",
            )
    if len(set(pii)) != len(pii):
        _problem(problems, "governance.pii_columns", "a column is listed twice; list each once")
    row_filter = section.get("row_filter_column")
    if row_filter is not None and (row_filter not in by_name or by_name[row_filter].type != "string"):
        _problem(
            problems,
            "governance.row_filter_column",
            f"{row_filter!r} is not a string column; name one or remove the field",
        )
    values = section.get("row_filter_values", [])
    if not isinstance(values, list) or not all(
        isinstance(v, str) and _SQL_LITERAL_RE.match(v) for v in values
    ):
        _problem(
            problems,
            "governance.row_filter_values",
            "must be a list of plain values (letters, digits, '-', '_', ' '), e.g. [\"KR\"]",
        )
        values = []
    if (row_filter is None) != (not values):
        _problem(
            problems,
            "governance.row_filter_values",
            "row_filter_column and row_filter_values go together: give both or neither",
        )
    retention = section.get("retention_days")
    if retention is not None and (not _whole(retention) or not 1 <= retention <= MAX_RETENTION_DAYS):
        _problem(
            problems,
            "governance.retention_days",
            f"use a whole number of days from 1 to {MAX_RETENTION_DAYS:,}, or leave it out to keep "
            "every event",
        )
        retention = None
    return Governance(
        classification=classification,
        pii_columns=tuple(dict.fromkeys(pii)),
        row_filter_column=row_filter,
        row_filter_values=tuple(values),
        retention_days=retention,
    )


def _check_stale_after_hours(processing: Processing, problems: list[tuple[str, str]]) -> None:
    stale = processing.stale_after_hours
    field = "processing.stale_after_hours"
    if stale is not None and (not _whole(stale) or not 0 <= stale <= MAX_STALE_HOURS):
        _problem(
            problems,
            field,
            f"use a whole number of hours from 1 to {MAX_STALE_HOURS} (CloudWatch evaluates an alarm "
            "over 7 days at most), 0 for no alarm, or leave it out with a rate(...) schedule",
        )
        return
    if schedule_problem(processing.schedule):
        return  # reported as processing.schedule
    interval = schedule_interval_minutes(processing.schedule)
    if interval is None and stale is None:
        _problem(
            problems,
            field,
            f"a cron(...) schedule needs it: the most hours, 1 to {MAX_STALE_HOURS}, you accept without "
            "a successful run (two of the schedule's intervals and a run's length, so that one failed "
            "run, which alarms anyway, does not alarm twice), or 0 for no alarm",
        )
    elif interval is not None and stale is None and interval >= MAX_STALE_HOURS * 60:
        _problem(
            problems,
            field,
            f"runs {processing.schedule} apart are too far apart for the alarm on stale data "
            f"(CloudWatch evaluates {MAX_STALE_HOURS} hours at most): set it to 0 for no alarm, or "
            "schedule runs more often",
        )
    elif interval is not None and stale and stale * 60 <= interval:
        _problem(
            problems,
            field,
            f"{stale} hours is not longer than the time between runs ({processing.schedule}), so it "
            "would alarm between any two runs: use more hours, or leave it out to derive it",
        )


def parse_dataset(raw: Any, path: Path | str) -> Dataset:
    """Validate the decoded JSON of a dataset file and build the model, or raise one error."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise DatasetConfigError(path, [("(top level)", "the file must hold one JSON object")])
    _check_keys(raw, _TOP_FIELDS, "", problems)
    name = raw.get("name")
    stem = Path(path).stem
    if not isinstance(name, str) or not _NAME_RE.match(name):
        _problem(problems, "name", f"got {name!r}; use a lower-case identifier such as {stem!r}")
        name = stem
    elif name != stem:
        _problem(problems, "name", f"{name!r} differs from the file name; rename the file to {name}.json")
    description = raw.get("description", "")
    if (
        not isinstance(description, str)
        or len(description) > MAX_DESCRIPTION
        or not _GLUE_DESCRIPTION_RE.fullmatch(description)
    ):
        _problem(
            problems,
            "description",
            f"must be a string of at most {MAX_DESCRIPTION:,} characters, with no control character "
            "but tabs and line breaks (Glue's tables carry it)",
        )
        description = ""

    columns: list[Column] = []
    raw_columns = raw.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        _problem(problems, "columns", "missing; list the dataset's columns as objects with 'name' and 'type'")
        raw_columns = []
    seen: set[str] = set()
    reserved = {n for n, _, _ in METADATA_COLUMNS} | set(RAW_PARTITIONS) | set(JOB_ROW_COLUMNS)
    for i, raw_column in enumerate(raw_columns):
        column = _parse_column(raw_column, f"columns[{i}]", problems)
        if column is None:
            continue
        if column.name in seen:
            _problem(problems, f"columns[{column.name}]", "duplicate column; each name may appear once")
        if column.name in reserved:
            _problem(
                problems,
                f"columns[{column.name}]",
                f"{column.name!r} is added by the pipeline; rename the column",
            )
        seen.add(column.name)
        columns.append(column)
    by_name = {c.name: c for c in columns}

    record_key = raw.get("record_key")
    if record_key not in by_name:
        _problem(
            problems,
            "record_key",
            f"{record_key!r} is not a column; set it to one of: {', '.join(by_name) or '(no columns)'}",
        )
    elif not by_name[record_key].required or by_name[record_key].type != "string":
        _problem(problems, "record_key", f"column {record_key!r} must be a required string")
    event_time = raw.get("event_time")
    if event_time not in by_name:
        _problem(
            problems,
            "event_time",
            f"partition key {event_time!r} is not in the schema; set it to a required timestamp column",
        )
    elif by_name[event_time].type != "timestamp" or not by_name[event_time].required:
        _problem(problems, "event_time", f"column {event_time!r} must be a required timestamp")
    governance = _parse_governance(raw.get("governance"), by_name, (record_key, event_time), problems)

    ingestion_raw = _parse_section(raw.get("ingestion"), "ingestion", _INGESTION_FIELDS, problems)
    ingestion = Ingestion(**ingestion_raw) if ingestion_raw else Ingestion()
    if ingestion.source not in SOURCES:
        _problem(problems, "ingestion.source", f"got {ingestion.source!r}; use one of {', '.join(SOURCES)}")
    if not _whole(ingestion.buffer_size_mib) or not 64 <= ingestion.buffer_size_mib <= 128:
        _problem(
            problems,
            "ingestion.buffer_size_mib",
            "dynamic partitioning needs a buffer of 64 to 128 MiB; use 128 for large objects",
        )
    if not _whole(ingestion.buffer_interval_seconds) or not 60 <= ingestion.buffer_interval_seconds <= 900:
        _problem(
            problems,
            "ingestion.buffer_interval_seconds",
            "use 60 to 900 seconds (900 makes fewer, larger objects)",
        )

    silent = ingestion.silent_after_hours
    if silent is not None and (not _whole(silent) or not 1 <= silent <= MAX_STALE_HOURS):
        _problem(
            problems,
            "ingestion.silent_after_hours",
            f"use a whole number of hours from 1 to {MAX_STALE_HOURS} (CloudWatch evaluates an alarm over "
            "7 days at most), or leave it out for no alarm on a silent source",
        )

    processing_raw = _parse_section(raw.get("processing"), "processing", _PROCESSING_FIELDS, problems)
    processing = Processing(**processing_raw) if processing_raw else Processing()
    if schedule_fix := schedule_problem(processing.schedule):
        _problem(problems, "processing.schedule", schedule_fix)
    _check_stale_after_hours(processing, problems)
    if not _whole(processing.target_file_size_mib) or not 16 <= processing.target_file_size_mib <= 1024:
        _problem(problems, "processing.target_file_size_mib", "use 16 to 1024 (MiB); 128 suits Athena")
    lookback = processing.key_lookback_days
    if lookback is not None and (not _whole(lookback) or not 1 <= lookback <= 3660):
        _problem(
            problems,
            "processing.key_lookback_days",
            "use a whole number of days from 1 to 3660, or leave it out to search the whole curated table",
        )
    if processing.quality_scope not in QUALITY_SCOPES:
        _problem(
            problems,
            "processing.quality_scope",
            f"got {processing.quality_scope!r}; use days_written (the days each run wrote) or table "
            "(the whole curated table after every run)",
        )
    if not _whole(processing.workers) or processing.workers < 2:
        _problem(problems, "processing.workers", "use a whole number of Glue workers, 2 or more")
    if not isinstance(processing.worker_type, str) or processing.worker_type not in WORKER_DPUS:
        _problem(
            problems,
            "processing.worker_type",
            f"got {processing.worker_type!r}; use one of {', '.join(WORKER_DPUS)}",
        )
    if (
        not _whole(processing.timeout_minutes)
        or not 1 <= processing.timeout_minutes <= MAX_JOB_TIMEOUT_MINUTES
    ):
        _problem(
            problems,
            "processing.timeout_minutes",
            f"use a whole number of minutes from 1 to {MAX_JOB_TIMEOUT_MINUTES} (48 hours, Glue's limit)",
        )
    if processing.execution_class not in ("STANDARD", "FLEX"):
        _problem(
            problems,
            "processing.execution_class",
            f"got {processing.execution_class!r}; use STANDARD (runs start at once) or FLEX (spare "
            "capacity, cheaper, runs may start late)",
        )
    elif processing.execution_class == "FLEX" and processing.worker_type not in FLEX_WORKER_TYPES:
        _problem(
            problems,
            "processing.execution_class",
            f"FLEX runs on {' or '.join(FLEX_WORKER_TYPES)} workers only, not {processing.worker_type}: "
            "change worker_type or use STANDARD",
        )

    if problems:
        raise DatasetConfigError(path, problems)
    assert isinstance(record_key, str) and isinstance(event_time, str)
    return Dataset(
        name=name,
        description=description,
        record_key=record_key,
        event_time=event_time,
        columns=tuple(columns),
        governance=governance,
        ingestion=ingestion,
        processing=processing,
        source_file=str(path),
    )


def load_dataset(path: Path | str) -> Dataset:
    """Read and validate one dataset file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetConfigError(path, [("(file)", f"cannot read it: {exc.strerror}")]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetConfigError(
            path, [(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}")]
        ) from None
    return parse_dataset(raw, path)


def load_datasets(directory: Path | str = DATASETS_DIR) -> tuple[Dataset, ...]:
    """Every ``*.json`` dataset file of a folder, sorted by name."""
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise DatasetConfigError(directory, [("(folder)", "no dataset files; add one such as orders.json")])
    return tuple(load_dataset(p) for p in paths)


#: AWS caps these names at 64 characters. The longest the lake builds from a dataset's name is its
#: pipeline's EventBridge Scheduler schedule, ``<prefix>-<name>-pipeline``, and its producer's IAM
#: role, ``<prefix>-<name>-producer``, as long; the Firehose stream ``<prefix>-<name>`` and the
#: job's and crawler's IAM roles (``-job``, ``-crawler``) are shorter.
NAME_LIMIT = 64
LONGEST_NAME_SUFFIX = "-pipeline"


_RAW_BUCKET_RE = re.compile(
    r"^(?P<prefix>[a-z][a-z0-9-]*)-raw-(?P<account>\d{12})-(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)$"
)


def resource_name_of(dataset_name: str) -> str:
    """A dataset's name as resource names use it: dashes instead of underscores."""
    return dataset_name.replace("_", "-")


def start_pipeline_command(raw_bucket: str, dataset_name: str) -> str | None:
    """The AWS CLI line that starts the pipeline of ``dataset_name`` in the stage whose raw bucket
    is ``raw_bucket`` (``<prefix>-raw-<account>-<region>``, as the lake names it); ``None`` for a
    bucket named otherwise."""
    match = _RAW_BUCKET_RE.match(raw_bucket)
    if match is None:
        return None
    name = f"{match['prefix']}-{resource_name_of(dataset_name)}{LONGEST_NAME_SUFFIX}"
    arn = f"arn:aws:states:{match['region']}:{match['account']}:stateMachine:{name}"
    return f"aws stepfunctions start-execution --region {match['region']} --state-machine-arn {arn}"


def longest_dataset_name(prefix: str) -> int:
    """How long a dataset's name may be under a stage's resource-name ``prefix``."""
    return NAME_LIMIT - len(f"{prefix}-") - len(LONGEST_NAME_SUFFIX)


def check_name_lengths(datasets: Iterable[Dataset], prefix: str) -> None:
    """Raise for the first dataset whose name, under the stage's ``prefix``, makes a resource name
    longer than AWS allows: named here, with the file and the fix, rather than by CDK's validation
    of a generated resource or at deploy time."""
    longest = longest_dataset_name(prefix)
    for dataset in datasets:
        if len(dataset.name) > longest:
            schedule = f"{prefix}-{dataset.resource_name}{LONGEST_NAME_SUFFIX}"
            raise DatasetConfigError(
                dataset.source_file,
                [
                    (
                        "name",
                        f"{dataset.name!r} has {len(dataset.name)} characters: its schedule "
                        f"{schedule!r} would have {len(schedule)}, over the {NAME_LIMIT} AWS allows; "
                        f"under the stage prefix {prefix!r} use at most {longest} (and rename the file)",
                    )
                ],
            )
