"""Pure ``DataFrame -> DataFrame`` steps of the raw-to-curated job. Nothing runs at import time.

The dataset spec (the compact form of ``config/datasets/<name>.json``) drives every step, so the
same code curates any dataset. Raw rows are read with every leaf as a string: the job validates
and casts itself (defence in depth behind the Firehose transform) instead of trusting the reader.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

CORRUPT = "_corrupt_record"
#: Why a JSON object's array or struct columns do not have their shape (:func:`shape_reason`);
#: an empty array when they do.
MISSHAPEN = "_misshapen"
RAW_FILE = "_raw_file"
#: The line of the raw object a row was parsed from (:func:`parse_lines`); kept for the quarantine.
RAW_LINE = "_raw_line"
REASON = "quarantine_reason"
PARTITIONS = ("year", "month", "day")
#: The output file a row belongs to (:func:`place_in_files`); never written.
FILE_BUCKET = "_file_bucket"
METADATA = (("ingested_at", "timestamp"), ("source_stream", "string"))
_DECIMAL_RE = re.compile(r"^decimal\((\d+),(\d+)\)$")
_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
#: Timestamps in the raw zone are UTC ISO-8601 with milliseconds, as the transform writes them.
RAW_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
#: Every timestamp falls in [2000-01-01, 2100-01-01) UTC, in microseconds since the epoch, as the
#: transform holds it (records.MIN_EVENT_TIME, MAX_EVENT_TIME): a line written by other means
#: (a backfill, a replay) with epoch seconds read as milliseconds is refused here too.
_TIMESTAMP_WINDOW = tuple(int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) * 10**6 for year in (2000, 2100))
#: The ``year=/month=/day=`` folder of an object path (Java and Python regex alike): the job finds
#: the days to rebuild with it, quarantined rows are partitioned by it, and a valid row's event
#: time must fall on it, so the three agree.
RAW_PATH_DAY = r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/"
#: Numbers and dates as the transform reads them (Java regex; ``\d`` is ASCII): Spark's casts
#: alone also take NaN, Infinity and 1.5d as doubles, Arabic-Indic digits as a decimal, t, yes
#: and 1 as booleans, and 2024-5-1, 2024-05 and 2024 as dates.
_NUMBER_TEXT = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_DATE_TEXT = r"^\d{4}-\d{2}-\d{2}$"
#: A \uD800-\uDFFF escape that is not half of a high-low pair, after an even run of backslashes
#: (so \\ud800, an escaped backslash, is text): valid JSON, not valid Unicode. The transform
#: refuses such a record.
_LONE_SURROGATE = (
    r"(?i)(?<!\\)(?:\\\\)*(?:\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
    r"|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2})"
)
_LONE_SURROGATE_REASON = "a value holds a lone UTF-16 surrogate escape, which is not valid Unicode"
#: A timestamp's UTC day in the text ``RAW_PATH_DAY`` matches (Spark datetime pattern).
_DAY_FOLDER_FORMAT = "'/year='yyyy'/month='MM'/day='dd'/'"


def _leaf_string_type(col: dict[str, Any]) -> T.DataType:
    if col["type"] == "array":
        return T.ArrayType(T.StructType([T.StructField(f["name"], T.StringType()) for f in col["fields"]]))
    if col["type"] == "struct":
        return T.StructType([T.StructField(f["name"], T.StringType()) for f in col["fields"]])
    return T.StringType()


def raw_read_schema(spec: dict[str, Any]) -> T.StructType:
    """Schema of a raw record: every leaf a string, plus the metadata columns."""
    fields = [T.StructField(c["name"], _leaf_string_type(c)) for c in spec["columns"]]
    fields += [T.StructField(name, T.StringType()) for name, _ in METADATA]
    return T.StructType(fields)


#: Each line is parsed as the value of ``record`` in a wrapper object that ends with an end
#: marker: Spark's JSON parser reads the first value of a text and ignores whatever follows it,
#: so a line holding two records (``{...}{...}``, ``{...},{...}``) would be curated as its first
#: alone. In the wrapper, anything after the record is a syntax error, or closes the wrapper
#: before the marker (``{...}}``), so the marker is missing: the line is malformed either way.
_RECORD, _END_OF_LINE = "record", "end_of_line"


def parse_lines(lines: DataFrame, spec: dict[str, Any]) -> DataFrame:
    """Raw JSON lines (``value``, as ``spark.read.text`` gives them) as rows of
    :func:`raw_read_schema`, ``CORRUPT`` and ``MISSHAPEN``, each with its line in ``RAW_LINE``, so a
    quarantined row keeps its record exactly as delivered: unknown fields, numbers and key order
    included.

    A line of spaces, tabs or a carriage return only is no record (Spark's JSON reader skips it
    too); any other line that is not one JSON object is malformed, its text in ``CORRUPT``: a
    JSON array, ``null``, and a line with anything after its object (a second record, a comma)
    included, so no line, and no record in it, is dropped unseen. So is what only Spark's lenient
    defaults would read (single quotes, ``NaN``, ``Infinity``): the transform refuses it too.

    A JSON object whose array or struct column holds another shape (``"x"``, ``5``, ``[1]``, an
    object for an array) fails the typed read as a whole, though it is no malformed JSON: it is
    read again with that column alone typed, its other columns kept, and the reasons the transform
    gives (``shipping: expected an object``) in ``MISSHAPEN``. Only lines the typed read
    refused are read again.
    """
    # strict JSON, as the transform reads it (Python's json): no 'single quotes', no NaN or Infinity
    options = {
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": CORRUPT,
        "allowSingleQuotes": "false",
        "allowNonNumericNumbers": "false",
    }
    record_schema = raw_read_schema(spec)

    def read(line: str, record: T.StructType) -> Column:
        wrapped = F.concat(F.lit(f'{{"{_RECORD}":'), F.col(line), F.lit(f',"{_END_OF_LINE}":1}}'))
        fields = [T.StructField(_RECORD, record), T.StructField(_END_OF_LINE, T.IntegerType())]
        return F.from_json(wrapped, T.StructType([*fields, T.StructField(CORRUPT, T.StringType())]), options)

    def whole(wrapper: Column) -> Column:
        # one object and nothing after it: parsed whole, the marker read, and not a JSON null
        return F.coalesce(
            wrapper[CORRUPT].isNull() & (wrapper[_END_OF_LINE] == 1) & wrapper[_RECORD].isNotNull(),
            F.lit(False),
        )

    parsed = lines.where(~F.col("value").rlike(r"^[ \t\r]*$")).select(
        read("value", record_schema).alias("_line"),
        F.col("value").alias(RAW_LINE),
        *[c for c in lines.columns if c != "value"],
    )
    rest = [c for c in parsed.columns if c != "_line"]
    parsed = parsed.withColumn("_typed", whole(F.col("_line")))
    typed, line = F.col("_typed"), F.col("_line")[_RECORD]
    nested = {c["name"]: c["type"] for c in spec["columns"] if c["type"] in ("array", "struct")}
    if not nested:  # every column is text: a line the typed read refused is malformed JSON
        return parsed.select(
            *[line[f.name].alias(f.name) for f in record_schema.fields],
            F.when(~typed, F.col(RAW_LINE)).alias(CORRUPT),
            F.array().cast("array<string>").alias(MISSHAPEN),
            *rest,
        )
    # A line the typed read refused is read again, once with every column as text (any JSON value
    # fits, so this read fails on malformed JSON alone) and once per array or struct column with
    # that column alone typed. A valid line is read once.
    as_text = T.StructType([T.StructField(f.name, T.StringType()) for f in record_schema.fields])
    again = {
        "": as_text,
        **{n: T.StructType([f if f.name == n else as_text[f.name] for f in record_schema]) for n in nested},
    }
    parsed = parsed.select(
        "*", *[F.when(~typed, read(RAW_LINE, schema)).alias(f"_again_{n}") for n, schema in again.items()]
    )
    readable = typed | whole(F.col("_again_"))
    fits = {n: whole(F.col(f"_again_{n}")) for n in nested}

    def value(name: str) -> Column:
        if name in nested:  # null when it does not fit: MISSHAPEN says why
            return F.when(typed, line[name]).when(fits[name], F.col(f"_again_{name}")[_RECORD][name])
        return F.when(typed, line[name]).when(readable, F.col("_again_")[_RECORD][name])

    def misshapen(name: str) -> Column:
        # a blank string is no value, as for a number or a time (and as the transform reads it)
        blank = F.trim(F.col("_again_")[_RECORD][name]) == ""
        return F.when(readable & ~typed & ~fits[name] & ~blank, F.lit(shape_reason(name, nested[name])))

    return parsed.select(
        *[value(f.name).alias(f.name) for f in record_schema.fields],
        F.when(~readable, F.col(RAW_LINE)).alias(CORRUPT),
        F.filter(F.array(*[misshapen(n) for n in nested]), lambda r: r.isNotNull()).alias(MISSHAPEN),
        *rest,
    )


def shape_reason(name: str, ctype: str) -> str:
    """Why a column's value is not the array or struct it is declared (:func:`parse_lines`)."""
    return f"{name}: expected {'an array of objects' if ctype == 'array' else 'an object'}"


def _value_checks(value: Column, col: dict[str, Any], label: str) -> tuple[Column, list[tuple[Column, str]]]:
    """(typed value, [(failure condition, reason)]) for one scalar field read as a string."""
    ctype = col["type"]
    is_decimal = _DECIMAL_RE.match(ctype) is not None
    text = F.trim(value)
    present = value.isNotNull() & (text != "")
    checks: list[tuple[Column, str]] = []
    if col.get("required"):
        # the transform's words: a blank string column is empty, any other blank value missing
        blank = value.isNotNull() & ~present if ctype == "string" else F.lit(False)
        checks.append((~present & ~blank, f"{label}: required field is missing"))
        checks.append((blank, f"{label}: required field is empty"))
    if ctype == "string":
        typed = F.when(present, text)
        if "max_length" in col:
            checks.append((present & (F.length(text) > col["max_length"]), f"{label}: too long"))
        if "enum" in col:
            checks.append((present & ~text.isin(col["enum"]), f"{label}: not an allowed value"))
        if "pattern" in col:
            # the whole value, as the transform (fullmatch) and DQDL's `matches` hold it: rlike alone
            # finds the pattern anywhere in the value. UNIX_LINES (?d): `.` leaves out \n only, as
            # in Python and RE2, not \r, \u0085, \u2028 and \u2029 too (the dataset file allows
            # only the syntax the three read alike: datalake.dataset.pattern_portability_problem)
            whole = f"(?d)^(?:{col['pattern']})\\z"
            # only within max_length, as the transform checks the length first: the regex's work
            # on a long value can grow with a power of its length (datalake.backtracking)
            within = present & (F.length(text) <= col["max_length"]) if "max_length" in col else present
            checks.append((within & ~text.rlike(whole), f"{label}: does not match {col['pattern']}"))
        return typed, checks
    if ctype == "timestamp":
        typed = F.to_timestamp(text, RAW_TIMESTAMP_FORMAT)
        micros = F.unix_micros(typed)
        checks.append(
            (
                (micros < _TIMESTAMP_WINDOW[0]) | (micros >= _TIMESTAMP_WINDOW[1]),
                f"{label}: outside 2000-01-01..2100-01-01",
            )
        )
    elif is_decimal:
        wide = text.cast("decimal(38,18)")
        typed = text.cast(ctype)
        # the grammar too: the cast (Java's BigDecimal) also reads other scripts' digits
        malformed = wide.isNull() | typed.isNull() | ~text.rlike(_NUMBER_TEXT)
        checks.append((present & malformed, f"{label}: not a {ctype}"))
        # a cast rounds extra decimal places away: refuse instead, money stays exact
        checks.append(
            (
                present & typed.isNotNull() & (typed.cast("decimal(38,18)") != wide),
                f"{label}: too many decimals",
            )
        )
    elif ctype in _INT_BOUNDS:
        wide = text.cast("decimal(38,0)")
        typed = text.cast(ctype)
        checks.append(
            (
                present & (typed.isNull() | (wide != text.cast("decimal(38,18)"))),
                f"{label}: not a whole {ctype}",
            )
        )
    elif ctype == "boolean":  # true or false, in any case
        lowered = F.lower(text)
        typed = F.when(lowered == "true", F.lit(True)).when(lowered == "false", F.lit(False))
    elif ctype == "date":
        typed = F.when(text.rlike(_DATE_TEXT), text.cast("date"))
    else:  # double: a finite number (1e400 casts to Infinity)
        number = text.cast("double")
        typed = F.when(text.rlike(_NUMBER_TEXT) & (F.abs(number) < F.lit(math.inf)), number)
    if ctype not in _INT_BOUNDS and not is_decimal:
        checks.append((present & typed.isNull(), f"{label}: not a valid {ctype}"))
    if "min" in col:
        checks.append(
            (typed.isNotNull() & (typed < F.lit(col["min"])), f"{label}: below the minimum {col['min']}")
        )
    if "max" in col:
        checks.append(
            (typed.isNotNull() & (typed > F.lit(col["max"])), f"{label}: above the maximum {col['max']}")
        )
    return F.when(present, typed), checks


def _element_failure(children: list[dict[str, Any]]) -> Any:
    """``x -> bool``: does one array element fail any child's checks (one argument, for Spark)."""

    def fails(x: Column) -> Column:
        conditions = [
            c for child in children for c, _ in _value_checks(x[child["name"]], child, child["name"])[1]
        ]
        return F.greatest(*[F.coalesce(c, F.lit(False)) for c in conditions], F.lit(False))

    return fails


def _element_cast(child: dict[str, Any]) -> Any:
    def cast(x: Column) -> Column:
        typed, _ = _value_checks(x[child["name"]], child, child["name"])
        return typed

    return cast


def _struct_of(casts: dict[str, Any]) -> Any:
    def build(x: Column) -> Column:
        return F.struct(*[fn(x).alias(n) for n, fn in casts.items()])

    return build


# --- fast path for arrays --------------------------------------------------------------------------
# Spark runs the element checks above (``exists``/``transform``) interpreted, element by element:
# most of the validation time. An array whose elements are all canonical and valid (what the
# Firehose transform writes) is recognized instead by one compiled regex over its JSON text and
# typed by one cast. Any other array takes the general path, which alone defines the behaviour;
# a test runs both paths on every kind of element and compares.

#: JSON string content with no escapes (no quote, backslash or control character) and no
#: leading or trailing space, so ``trim`` leaves it as it is; ``{inner}`` bounds its length.
_PLAIN_TEXT = r'[^"\\ ](?:[^"\\]{inner}[^"\\ ])?'
_INT_DIGITS = {"int": 9, "bigint": 18}  # fewer digits than the type's bound: no overflow check


def _canonical_value(col: dict[str, Any]) -> str | None:
    """Regex (Java) of the canonical text of a valid value of ``col``; ``None`` when none is defined.

    Every text it accepts passes each check of :func:`_value_checks` and casts to the same value.
    """
    ctype = col["type"]
    low = col.get("min")
    if ctype == "string":
        limit = col.get("max_length")
        if "pattern" in col or (limit is not None and limit < 2):
            return None
        plain = _PLAIN_TEXT.format(inner="*" if limit is None else f"{{0,{limit - 2}}}")
        if "enum" in col:  # the allowed values that are plain text within the length
            allowed = [re.escape(v) for v in col["enum"] if re.fullmatch(plain, v)]
            return "(?:" + "|".join(allowed) + ")" if allowed else None
        return plain
    if "max" in col or (low is not None and low > 1):
        return None
    if ctype in _INT_DIGITS:
        digits = _INT_DIGITS[ctype]
        positive = rf"[1-9]\d{{0,{digits - 1}}}"
        return positive if low is not None and low > 0 else rf"(?:0|{positive})"
    match = _DECIMAL_RE.match(ctype)
    if match and (low is None or low <= 0):
        precision, scale = int(match.group(1)), int(match.group(2))
        if scale > 18 or precision - scale > 20:  # beyond the decimal(38,18) the checks compare in
            return None
        whole = "0" if precision == scale else rf"(?:0|[1-9]\d{{0,{precision - scale - 1}}})"
        return whole + (rf"\.\d{{{scale}}}" if scale else "")
    return None


def fast_array_pattern(children: list[dict[str, Any]]) -> str | None:
    """Regex that the JSON text (``to_json``) of an array of ``children`` structs matches only when
    every element is canonical and valid; ``None`` when a child's type has no canonical form."""
    fields = []
    for child in children:
        value = _canonical_value(child)
        if value is None:
            return None
        fields.append(re.escape(json.dumps(child["name"])) + ':"' + value + '"')
    element = r"\{" + ",".join(fields) + r"\}"
    return rf"^\[(?:{element}(?:,{element})*)?\]$"


def validate_and_cast(raw: DataFrame, spec: dict[str, Any], *, fast_path: bool = True) -> DataFrame:
    """Typed columns plus ``quarantine_reason`` (empty when the row is valid), from the rows of
    :func:`parse_lines` with their object's path in ``RAW_FILE``.

    Malformed JSON, missing required fields, values that do not cast exactly, enum, pattern and
    range violations and invalid array elements all become reasons; nothing is dropped here.

    So does an event time whose UTC day is not the ``year=/month=/day=`` folder of the row's raw
    object (``RAW_FILE``): the job rebuilds a curated day from that day's raw folder alone, so a
    row curated from another folder would overwrite its day with only the rows of that run.

    ``year``/``month``/``day`` are the day a row belongs to: its event time's UTC day when valid
    (its curated partition), its raw object's folder when rejected (its quarantine partition,
    rebuilt with that folder). Worked out here once, while the row is validated; the session time
    zone must be UTC, as :func:`job.run` sets it.
    """
    event_time = spec["event_time"]
    typed_cols: list[Column] = []
    checks: list[tuple[Column, str]] = []
    for col in spec["columns"]:
        name = col["name"]
        if col["type"] in ("array", "struct"):
            children = col["fields"]
            if col["type"] == "array":
                casts = {child["name"]: _element_cast(child) for child in children}
                # one pass over the elements for every child's checks
                bad = F.coalesce(F.exists(F.col(name), _element_failure(children)), F.lit(False))
                typed = F.transform(F.col(name), _struct_of(casts))
                pattern = fast_array_pattern(children) if fast_path else None
                if pattern is not None:  # canonical arrays skip both passes over their elements
                    fast = F.col(name).isNull() | F.to_json(F.col(name)).rlike(pattern)
                    element = ",".join(f"`{child['name']}`:{child['type']}" for child in children)
                    bad = F.when(fast, F.lit(False)).otherwise(bad)
                    typed = F.when(fast, F.col(name).cast(f"array<struct<{element}>>")).otherwise(typed)
                checks.append((bad, f"{name}: an element is invalid"))
            else:
                parts = []
                for child in children:
                    t, cks = _value_checks(F.col(name)[child["name"]], child, f"{name}.{child['name']}")
                    parts.append(t.alias(child["name"]))
                    checks += [(F.col(name).isNotNull() & c, r) for c, r in cks]
                typed = F.when(F.col(name).isNotNull(), F.struct(*parts))
            if col.get("required"):  # null, not misshapen: that reason says enough
                misshapen = F.array_contains(F.col(MISSHAPEN), shape_reason(name, col["type"]))
                checks.append((F.col(name).isNull() & ~misshapen, f"{name}: required field is missing"))
            typed_cols.append(typed.alias(name))
            continue
        typed, cks = _value_checks(F.col(name), col, name)
        typed_cols.append(typed.alias(name))
        checks += cks
        if name == event_time:
            event_ts = typed
    ingested = F.to_timestamp(F.col("ingested_at"), RAW_TIMESTAMP_FORMAT)
    checks.append((ingested.isNull(), "ingested_at: missing or invalid"))
    # Spark reads a lone surrogate escape as "?", so it is found in the line; `contains` first
    # spares the regex on lines without escapes (the transform writes UTF-8, not \u escapes)
    line = F.col(RAW_LINE)
    checks.append((line.contains("\\u") & line.rlike(_LONE_SURROGATE), _LONE_SURROGATE_REASON))
    reason = F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed JSON")).otherwise(
        F.concat_ws(
            "; ",
            F.col(MISSHAPEN),
            *[F.when(F.coalesce(cond, F.lit(False)), F.lit(msg)) for cond, msg in checks],
        )
    )
    checked = raw.select(
        *typed_cols,
        ingested.alias("ingested_at"),
        F.col("source_stream"),
        F.col(RAW_FILE),
        reason.alias(REASON),
        # the row's folder and its event day, once per row: compared next, then its partition
        F.regexp_extract(F.col(RAW_FILE), RAW_PATH_DAY, 0).alias("_folder"),  # "" outside a day folder
        F.date_format(event_ts, _DAY_FOLDER_FORMAT).alias("_event_folder"),
        F.col(CORRUPT),
        F.col(RAW_LINE),
    )
    # an event filed under another day's folder (null, so no reason, without an event time)
    elsewhere = (
        F.col(CORRUPT).isNull() & (F.col("_folder") != "") & (F.col("_folder") != F.col("_event_folder"))
    )
    checked = checked.withColumn(
        REASON,
        F.concat_ws(
            "; ",
            F.when(F.col(REASON) != "", F.col(REASON)),
            F.when(elsewhere, F.lit(f"{event_time}: not on the day of its raw object's folder")),
        ),
    )
    # The raw line and the object it came from, only for rows that will be quarantined: carrying
    # them would make every valid row longer (and the cache of the validated rows larger).
    rejected = F.col(REASON) != ""
    day_folder = F.when(rejected, F.col("_folder")).otherwise(F.col("_event_folder"))
    internal = (RAW_FILE, RAW_LINE, CORRUPT, "_folder", "_event_folder")
    return checked.select(
        *[c for c in checked.columns if c not in internal],
        F.when(rejected, F.col(RAW_FILE)).alias(RAW_FILE),
        F.when(rejected, F.col(RAW_LINE)).alias("raw_record"),
        # "/year=2024/month=05/day=01/": 4 digits at 7, 2 at 18 and 2 at 25
        F.substring(day_folder, 7, 4).alias("year"),
        F.substring(day_folder, 18, 2).alias("month"),
        F.substring(day_folder, 25, 2).alias("day"),
    )


def split_valid(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid rows, rows to quarantine)."""
    return checked.where(F.col(REASON) == ""), checked.where(F.col(REASON) != "")


def latest_per_key(df: DataFrame, key: str, within: tuple[str, ...] = ()) -> DataFrame:
    """One row per ``key`` (per ``within`` and ``key``): the latest ``ingested_at``; ties broken
    by content, so reruns agree.

    A ``row_number`` window: measured faster end to end than a ``max_by`` aggregation, whose
    struct buffers make the following write slower (``make bench``). With ``within`` set to the
    columns the rows are already hash-partitioned on (:func:`place_in_files`), the window needs no
    shuffle of its own.
    """
    content = [c for c in df.columns if c != FILE_BUCKET]
    order = [F.col("ingested_at").desc_nulls_last(), F.xxhash64(*content).desc()]
    window = Window.partitionBy(*within, key).orderBy(*order)
    ranked = df.withColumn("_rank", F.row_number().over(window))
    return ranked.where(F.col("_rank") == 1).drop("_rank")


def spans_days(df: DataFrame, key: str, event_time: str) -> bool:
    """Does any ``key`` have rows on more than one UTC day of ``event_time``?

    Narrow on purpose (a 64-bit hash of the key and a date): it decides whether deduplicating
    within each day is enough. A hash collision only sends the run down the slower, still
    correct path.
    """
    days = df.select(F.xxhash64(key).alias("k"), F.to_date(event_time).alias("d"))
    spans = days.groupBy("k").agg(F.min("d").alias("first"), F.max("d").alias("last"))
    return bool(spans.where(F.col("first") != F.col("last")).take(1))


def _murmur3_int(value: int, seed: int = 42) -> int:
    """Spark's ``hash()`` of an ``int`` (Murmur3 x86 32-bit, seed 42), as a signed 32-bit int."""

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    k1 = rotl((value * 0xCC9E2D51) & 0xFFFFFFFF, 15) * 0x1B873593 & 0xFFFFFFFF
    h1 = (rotl(seed ^ k1, 13) * 5 + 0xE6546B64) & 0xFFFFFFFF
    h1 ^= 4
    h1 = ((h1 ^ (h1 >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    h1 = ((h1 ^ (h1 >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def partition_slots(n: int) -> list[int]:
    """For each partition ``b < n``, an ``int`` that ``repartition(n, column)`` sends to ``b``.

    Spark's hash partitioning puts a row in ``pmod(hash(column), n)``; the smallest value that
    lands in each partition is found here, on the driver.
    """
    slots: dict[int, int] = {}
    value = 0
    while len(slots) < n:
        slots.setdefault(_murmur3_int(value) % n, value)
        value += 1
    return [slots[b] for b in range(n)]


def place_in_files(df: DataFrame, key: str, files_per_day: dict[tuple[str, str, str], int]) -> DataFrame:
    """Hash-partition rows so that each output file of a day is written by a task of its own.

    Day ``d`` gets ``files_per_day[d]`` consecutive buckets and a row goes to one of them by the
    hash of its key, so all versions of a key meet in one task. Each bucket is a partition of its
    own (:func:`partition_slots`): a plain ``repartition`` by day can hash several days into one
    task, or adaptive execution can coalesce them, and then one task writes them one after the
    other while the other cores wait. A day missing from ``files_per_day`` (never expected: the
    raw zone is partitioned by the same event day) goes to one shared bucket, still deduplicated right.
    """
    firsts: dict[str, int] = {}
    total = 0
    for day, n in sorted(files_per_day.items()):
        firsts["-".join(day)] = total
        total += n
    counts = {"-".join(day): n for day, n in files_per_day.items()}
    row_day = F.concat_ws("-", *[F.col(p) for p in PARTITIONS])

    def lookup(values: dict[str, int]) -> Column:
        return F.element_at(F.create_map(*[F.lit(x) for kv in sorted(values.items()) for x in kv]), row_day)

    bucket = lookup(firsts) + F.pmod(F.xxhash64(key), lookup(counts).cast("long")).cast("int")
    slots = F.array(*[F.lit(v).cast("int") for v in partition_slots(total)])
    placed = df.withColumn(FILE_BUCKET, F.coalesce(F.element_at(slots, bucket + 1), F.lit(-1)))
    return placed.repartition(total, FILE_BUCKET)


def curated_columns(spec: dict[str, Any]) -> list[str]:
    """Columns of the curated table in order: the dataset's, the metadata, then the partitions."""
    return [c["name"] for c in spec["columns"]] + [n for n, _ in METADATA] + list(PARTITIONS)


def to_curated(valid: DataFrame, spec: dict[str, Any]) -> DataFrame:
    """The valid rows of :func:`validate_and_cast` in the curated table's columns; their
    ``year``/``month``/``day`` are their event time's UTC day."""
    return valid.select(*curated_columns(spec))


QUARANTINE_COLUMNS = (
    "record_key",
    "raw_record",
    REASON,
    "ingested_at",
    "source_stream",
    "raw_file",
    *PARTITIONS,
)


def to_quarantine(rejected: DataFrame, spec: dict[str, Any]) -> DataFrame:
    """Quarantined rows keep the raw record as it was (its line), the reason, and where it came from.

    They are partitioned by the day of the raw object they came from (:func:`validate_and_cast`),
    so rebuilding a day rewrites its quarantine too and reruns stay idempotent.
    """
    key = F.get_json_object(F.col("raw_record"), f"$.{spec['record_key']}")
    return rejected.select(
        key.alias("record_key"),
        F.col("raw_record"),
        F.col(REASON),
        F.col("ingested_at"),
        F.col("source_stream"),
        F.col(RAW_FILE).alias("raw_file"),
        *PARTITIONS,
    )
