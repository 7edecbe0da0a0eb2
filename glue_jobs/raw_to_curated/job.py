"""Raw JSON to curated Parquet, incremental and safe to re-run. Glue 5.1 entry point at the bottom.

Each run:

1. lists the raw objects of the dataset and subtracts the manifest of objects already processed
   with their sizes and modification times (an object put back under its name, or edited in
   place, counts as new; one outside a ``year=/month=/day=`` folder of a calendar date directly
   under the dataset's prefix is reported, not processed);
2. takes the event-time days (``year/month/day``) that received new objects, plus the days an
   operator asked to rebuild (``--rebuild_days``, after a rule changed), and widens that set to
   every day whose curated rows share a record key with it (a later version of an order can
   arrive on another day);
3. rebuilds each of those days from *all* of its raw objects: validate and cast, quarantine what
   fails (including an event whose UTC day is not its object's folder: curating it would overwrite
   a day this run did not read whole), keep the latest ingested version per key, and overwrites
   exactly those partitions (dynamic partition overwrite), so a re-run gives the same rows and
   late data never drops rows curated earlier. A rebuilt day left with no rows (its keys moved to
   another day, or its rows fail rules tightened since) is removed, since dynamic overwrite would
   keep its old files;
4. hands its result to the caller (``publish``: the Glue entry point registers the days in the
   catalog, publishes the counts and writes the run summary);
5. appends the new objects to the manifest, last, so a run that failed anywhere before, its
   ``publish`` included, is simply run again on the same objects. Once the manifest holds
   ``manifest_compact_at`` files, that run writes one file with every entry and removes the files
   it read, so an hourly schedule does not read thousands of small objects. The days a run
   rebuilds are recorded before it replaces any of them (:data:`REBUILDING`) and forgotten after
   the manifest: a run killed while it replaced them leaves the record, and the next run rebuilds
   those days too.

With a retention (``governance.retention_days``), a run also removes every event day older than
that many days: from the curated and quarantine zones first, from the catalog as it publishes,
and from the raw zone last, so a run that fails on the way leaves the raw day to the next run,
which removes the rest. It reads, curates and widens to no such day, so an event that arrives
for one is removed with it, counted, never curated.

The same :func:`run` runs on local Spark in the tests, the demo and the benchmarks.
"""

from __future__ import annotations

import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from transforms import (
    FILE_BUCKET,
    PARTITIONS,
    RAW_FILE,
    RAW_PATH_DAY,
    REASON,
    latest_per_key,
    parse_lines,
    place_in_files,
    spans_days,
    split_valid,
    to_curated,
    to_quarantine,
    validate_and_cast,
)

_DAY_RE = re.compile(RAW_PATH_DAY)
Day = tuple[str, str, str]
#: Under the manifest path: the days a run is rebuilding, written before it replaces any of them
#: and removed once it has recorded its objects. Spark's commit of a dynamic overwrite deletes a
#: day's old files, then moves its new ones in, day by day: a run killed in between (by Glue's
#: timeout) leaves days empty that the next run would not otherwise rebuild (a day it widened to
#: for an older version of a key, found then by its curated rows). ``_``: Spark's listings, and
#: so the manifest, skip it.
REBUILDING = "_rebuilding.json"
#: Where Spark stages a dynamic overwrite, under the table's path (``.spark-staging-<job id>``);
#: removed by its commit or its abort, left behind by a driver killed during the write.
SPARK_STAGING = ".spark-staging-*"


class Stored(NamedTuple):
    """An object as a listing sees it. S3 gives an object a new modification time whenever it is
    written, so the pair changes when an object is put back under its name, even at the same size."""

    size: int
    #: Milliseconds since the epoch; ``None`` in a manifest entry written before it was recorded.
    modified: int | None


@dataclass(frozen=True)
class JobConfig:
    """Where the job reads and writes; derived from the dataset file by the CDK app."""

    spec: dict[str, Any]
    raw_path: str
    curated_path: str
    quarantine_path: str
    manifest_path: str
    target_file_size_mib: float = 128
    manifest_compact_at: int = 48
    #: Search other versions of a run's keys only in curated days this close to the days it
    #: rebuilds; ``None``: in the whole curated table (``processing.key_lookback_days``).
    key_lookback_days: int | None = None
    #: Rebuild every day in this range (first, last; inclusive) that has raw objects, new or not:
    #: after a rule in the dataset file changed (:func:`rebuild_range`).
    rebuild: tuple[date, date] | None = None
    #: Event days more than this many days before ``today`` are past the dataset's retention
    #: (``governance.retention_days``) and removed; ``None``: kept for good.
    retention_days: int | None = None
    #: The day the retention counts back from; ``None``: the run's UTC date.
    today: date | None = None

    def retention_cutoff(self) -> date | None:
        """The first event day kept; every day before it is past the retention."""
        if self.retention_days is None:
            return None
        return (self.today or datetime.now(UTC).date()) - timedelta(days=self.retention_days)


def rebuild_range(text: str) -> tuple[date, date] | None:
    """The ``--rebuild_days`` argument: ``none``, one day ``2024-05-01``, or an inclusive range
    ``2024-05-01..2024-05-31``. Anything else fails the run before it reads anything, naming
    the argument and the forms it takes."""
    text = text.strip()
    if text in ("", "none"):
        return None
    day = r"\d{4}-\d{2}-\d{2}"  # fromisoformat alone would take 20240501 too
    match = re.fullmatch(rf"({day})(?:\.\.({day}))?", text)
    try:
        if match is None:
            raise ValueError(text)
        low, high = date.fromisoformat(match[1]), date.fromisoformat(match[2] or match[1])
        if high < low:
            raise ValueError(text)
    except ValueError:
        raise ValueError(
            f"--rebuild_days {text!r}: expected none, a day (2024-05-01) or a range of days, first "
            "to last (2024-05-01..2024-05-31)"
        ) from None
    return low, high


@dataclass
class RunResult:
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    new_objects: int = 0
    #: The days rebuilt; of those, the ones holding curated rows and quarantined rows after the run.
    days: list[Day] = field(default_factory=list)
    curated_days: list[Day] = field(default_factory=list)
    quarantine_days: list[Day] = field(default_factory=list)
    files_written: int = 0
    #: New raw objects outside a year=/month=/day= folder of a calendar date directly under the
    #: dataset's prefix: not curated, not in the manifest.
    unplaced_objects: list[str] = field(default_factory=list)
    #: Days a killed run was rebuilding (:data:`REBUILDING`), rebuilt again by this run.
    resumed_days: list[Day] = field(default_factory=list)
    #: Staging folders a killed run's write left under the curated or quarantine path, removed.
    stale_staging: list[str] = field(default_factory=list)
    #: Event days past the retention that this run removed (curated, quarantine, raw, catalog),
    #: and the raw objects removed with them: late events for such a day among them.
    expired_days: list[Day] = field(default_factory=list)
    expired_objects: int = 0
    #: The first event day the retention keeps (``2024-05-16``), as this run counted it; ``None``
    #: without a retention. ``publish`` removes the catalog's partitions of days before it.
    first_day_kept: str | None = None

    def as_dict(self) -> dict[str, Any]:
        lists = ("days", "curated_days", "quarantine_days", "resumed_days", "expired_days")
        return {**self.__dict__, **{n: ["-".join(d) for d in getattr(self, n)] for n in lists}}


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(conf), jvm


def list_objects(spark: SparkSession, path: str) -> dict[str, Stored]:
    """Every file below ``path`` (recursively) with its size and modification time; works on
    s3:// and file:// alike.

    Spark's own file index lists in the JVM (in parallel for many folders) and skips ``_`` and
    ``.`` files; the ``binaryFile`` source reads no content when only the listing's columns are
    selected. One call instead of several Py4J round trips per object.
    """
    if not _exists(spark, path):
        return {}
    listing = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(path)
        .select("path", "length", F.unix_millis("modificationTime").alias("modified"))
    )
    return {row.path: Stored(row.length, row.modified) for row in listing.collect()}


def _exists(spark: SparkSession, path: str) -> bool:
    fs, jvm = _fs(spark, path)
    return bool(fs.exists(jvm.org.apache.hadoop.fs.Path(path)))


def delete_path(spark: SparkSession, path: str) -> None:
    fs, jvm = _fs(spark, path)
    fs.delete(jvm.org.apache.hadoop.fs.Path(path), True)


def qualified(spark: SparkSession, path: str) -> str:
    """``path`` as Spark's file listings spell it (``file:/tmp/raw``, ``s3://bucket/raw``), with no
    trailing slash."""
    fs, jvm = _fs(spark, path)
    return str(fs.makeQualified(jvm.org.apache.hadoop.fs.Path(path)).toString())


def day_of(path: str, root: str) -> Day | None:
    """The ``year=/month=/day=`` folder directly under ``root`` (:func:`qualified`) that ``path`` is
    in; ``None`` outside one (a run reads only those folders), or when the folder names no calendar
    date (``day=30`` in February): the run reports such an object instead of curating it, rather
    than failing on it every run."""
    match = _DAY_RE.match(path, len(root)) if path.startswith(root) else None
    if match is None:
        return None
    try:
        date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return (match.group(1), match.group(2), match.group(3))


def _write_text(spark: SparkSession, path: str, text: str, *, overwrite: bool = False) -> None:
    """One small object written whole by the driver (no Spark job); s3:// and file:// alike."""
    fs, jvm = _fs(spark, path)
    stream = fs.create(jvm.org.apache.hadoop.fs.Path(path), overwrite)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def _read_text(spark: SparkSession, path: str) -> str | None:
    """One small object read whole by the driver; ``None`` when there is none."""
    fs, jvm = _fs(spark, path)
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    if not fs.exists(jpath):
        return None
    stream = fs.open(jpath)
    try:
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def rebuilding_path(manifest_path: str) -> str:
    return f"{manifest_path.rstrip('/')}/{REBUILDING}"


def read_rebuilding(spark: SparkSession, manifest_path: str) -> set[Day]:
    """The days a run that did not finish was rebuilding (:data:`REBUILDING`); none after a run
    that finished."""
    text = _read_text(spark, rebuilding_path(manifest_path))
    return _days(json.loads(text)["days"]) if text else set()


def write_rebuilding(spark: SparkSession, manifest_path: str, days: set[Day]) -> None:
    text = json.dumps({"days": ["-".join(d) for d in sorted(days)]})
    _write_text(spark, rebuilding_path(manifest_path), text, overwrite=True)


def remove_stale_staging(spark: SparkSession, *tables: str) -> list[str]:
    """Remove the :data:`SPARK_STAGING` folders under ``tables``: at most one run of the job runs
    at a time (its ``MaxConcurrentRuns``), so any such folder is a killed run's."""
    removed = []
    for table in tables:
        fs, jvm = _fs(spark, table)
        pattern = jvm.org.apache.hadoop.fs.Path(f"{table.rstrip('/')}/{SPARK_STAGING}")
        for status in fs.globStatus(pattern) or []:
            fs.delete(status.getPath(), True)
            removed.append(str(status.getPath().toString()))
    return sorted(removed)


def write_manifest(spark: SparkSession, path: str, objects: dict[str, Stored]) -> None:
    """One JSON-lines file per run under ``path``."""
    name = f"run-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"
    lines = "".join(json.dumps({"path": p, **objects[p]._asdict()}) + "\n" for p in sorted(objects))
    _write_text(spark, f"{path.rstrip('/')}/{name}", lines)


def summary_key(path: str, run_id: str) -> str:
    """Where a run's summary is: one object per run, named by the Glue job run id."""
    return f"{path.rstrip('/')}/{run_id}.json"


#: Glue's limit on the length of a data-quality run's ``AdditionalOptions`` value.
PREDICATE_LIMIT = 2048


def quality_predicate(days: list[Day]) -> str:
    """A predicate on the partition columns that holds for ``days``, in the form Glue documents for
    a ``pushDownPredicate`` (``year='2024' AND month='05'``): the data-quality evaluation after a
    run then reads the days the run wrote, not the whole table. Past Glue's limit on its length,
    whole months, then whole years (a coarser predicate holds for every day the exact one does).
    Empty for no day."""
    predicate = ""
    for depth in (2, 1, 0):  # the day listed per month, the month per year, the year alone
        groups: dict[tuple[str, ...], set[str]] = {}
        for day in days:
            groups.setdefault(day[:depth], set()).add(day[depth])
        clauses = []
        for fixed, values in sorted(groups.items()):
            listed = ", ".join(f"'{v}'" for v in sorted(values))
            terms = [f"{col}='{v}'" for col, v in zip(PARTITIONS, fixed, strict=False)]
            clauses.append("(" + " AND ".join([*terms, f"{PARTITIONS[depth]} IN ({listed})"]) + ")")
        predicate = " OR ".join(clauses)
        if len(predicate) <= PREDICATE_LIMIT:
            break
    return predicate


def run_summary(run_id: str, dataset: str, result: RunResult) -> dict[str, Any]:
    """What a run did, for the state machine that started it (:func:`write_run_summary`)."""
    return {
        "dataset": dataset,
        "run_id": run_id,
        "partitions_rebuilt": len(result.days),
        "quality_predicate": quality_predicate(result.curated_days),
        **result.as_dict(),
    }


def write_run_summary(spark: SparkSession, path: str, run_id: str, dataset: str, result: RunResult) -> str:
    """``<path>/<run_id>.json``: :func:`run_summary` of the run, written after the zones and the
    catalog, just before the manifest.

    The pipeline reads it after the job (one ``s3:GetObject``) and skips the crawler and the
    data-quality evaluation when ``partitions_rebuilt`` is 0: an hourly schedule with nothing new
    then pays for the job's one-minute minimum only. It evaluates data quality on the days in
    ``quality_predicate``, and not at all when the run left no curated row. The state machine reads
    it only for a run that succeeded; a retried run has a run id of its own.
    """
    key = summary_key(path, run_id)
    _write_text(spark, key, json.dumps(run_summary(run_id, dataset, result)), overwrite=True)
    return key


@dataclass(frozen=True)
class Manifest:
    """The objects processed so far and the manifest files they were read from."""

    objects: dict[str, Stored]
    files: tuple[str, ...]


def read_manifest(spark: SparkSession, path: str) -> Manifest:
    """Every processed object as last recorded: the run files are named by their UTC time, so a
    later file's entry for an object replaces an earlier one. An entry without a modification
    time (written before it was recorded) matches no listing, so its object is processed once
    more, which rebuilding whole days makes harmless."""
    files = tuple(sorted(list_objects(spark, path)))
    if not files:
        return Manifest({}, ())
    rows = (
        spark.read.schema("path string, size long, modified long")
        .json(list(files))
        .select("path", "size", "modified", F.input_file_name().alias("file"))
        .collect()
    )
    return Manifest({r.path: Stored(r.size, r.modified) for r in sorted(rows, key=lambda r: r.file)}, files)


def append_manifest(
    spark: SparkSession,
    path: str,
    manifest: Manifest,
    new: dict[str, Stored],
    compact_at: int,
    *,
    listed: Collection[str],
) -> None:
    """Record ``new`` in a file of its own; or, when the manifest would reach ``compact_at`` files,
    in one file holding the entries of every object still ``listed`` (not those removed since:
    past the retention, or erased whole), then remove the files ``manifest`` was read from.

    Crash-safe either way: until the removal finishes, entries are only recorded twice.
    """
    if len(manifest.files) + 1 < compact_at:
        write_manifest(spark, path, new)
        return
    kept = {p: stored for p, stored in manifest.objects.items() if p in listed}
    write_manifest(spark, path, {**kept, **new})
    for file in manifest.files:
        delete_path(spark, file)


def read_raw(spark: SparkSession, paths: list[str], spec: dict[str, Any]) -> DataFrame:
    """The raw JSON objects under ``paths`` as the job reads them (:func:`parse_lines`): every leaf
    a string, each row with its line and its object's path (``RAW_FILE``).

    Read as text and parsed with ``from_json`` rather than by Spark's JSON reader, which keeps no
    line: a quarantined record would be rebuilt from the fields the schema names, without its
    unknown fields and with its numbers turned to text. Validated, both reads take the same time.
    One record per line (JSON Lines, as the Firehose transform writes): a line holding a JSON array,
    or anything after its record, is quarantined whole, not split into records."""
    lines = spark.read.option("recursiveFileLookup", "true").text(paths)
    return parse_lines(lines.withColumn(RAW_FILE, F.input_file_name()), spec)


def _read_raw(spark: SparkSession, base: str, days: set[Day], spec: dict[str, Any]) -> DataFrame:
    """Every raw object of ``days``: one folder per day (hours below it), not one path per object.

    An object that lands between the listing and this read is curated now and again next run
    (it is not in this run's manifest): the day is rebuilt whole each time, so that is harmless.
    """
    return read_raw(spark, [_partition_path(base, day) for day in sorted(days)], spec)


class CuratedDaysWithoutRaw(RuntimeError):
    """Curated days to rebuild (they hold another version of a key this run curates) that have no
    raw object left: rebuilt from their raw objects, they would be emptied. Raised before the run
    writes anything."""

    def __init__(self, days: set[Day], raw_path: str) -> None:
        listed = ", ".join("-".join(d) for d in sorted(days))
        super().__init__(
            f"curated day(s) {listed} hold versions of keys this run curates, but have no raw "
            f"objects under {raw_path}: the job rebuilds a day from all of its raw objects, so it "
            "would empty them. Nothing was written or recorded. Put their raw objects back (the "
            "raw zone is never to be expired), or remove those days' curated rows on purpose, "
            "and run again."
        )
        self.days = days


class UnreadableObjects(RuntimeError):
    """Raw objects Spark cannot read (a truncated gzip, say): named, with the reason for each; the
    message names the first ``NAMED`` (it travels in the job run's error and an SNS notice)."""

    NAMED = 20

    def __init__(self, reasons: dict[str, str], raw_path: str) -> None:
        named = sorted(reasons.items())[: self.NAMED]
        listed = "; ".join(f"{path} ({reason})" for path, reason in named)
        if len(reasons) > len(named):
            listed += f"; and {len(reasons) - len(named)} more"
        super().__init__(
            f"{len(reasons)} raw object(s) cannot be read: {listed}. Nothing was written or recorded. "
            f"Move each out of {raw_path}, or put a readable copy under its name, and run again."
        )
        self.reasons = reasons


def _root_cause(error: BaseException) -> str:
    """The innermost Java exception behind a Spark failure (``java.io.EOFException: Unexpected
    end of input stream``), or the error's first line."""
    cause = getattr(error, "java_exception", None)
    while cause is not None and cause.getCause() is not None:
        cause = cause.getCause()
    text = str(cause.toString()) if cause is not None else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def unreadable_objects(spark: SparkSession, objects_by_day: dict[Day, list[str]]) -> dict[str, str]:
    """The objects of ``objects_by_day`` that Spark cannot read as text, with the reason for each:
    one read per day, then one per object of a day that failed."""

    def failure(paths: list[str]) -> str | None:
        try:
            spark.read.text(paths).count()
        except Exception as error:  # whatever Spark raised: the object is what is probed here
            return _root_cause(error)
        return None

    reasons = {}
    for _, paths in sorted(objects_by_day.items()):
        if paths and failure(paths) is not None:
            reasons.update({p: reason for p in paths if (reason := failure([p])) is not None})
    return reasons


@contextmanager
def _naming_unreadable_objects(
    spark: SparkSession, raw_path: str, objects_by_day: Callable[[], dict[Day, list[str]]]
) -> Iterator[None]:
    """Turn a failed read of the raw zone into :class:`UnreadableObjects` when some object is to
    blame; any other failure is raised as it was. Spark's own error names no file."""
    try:
        yield
    except CuratedDaysWithoutRaw:
        raise  # about days with no objects to read: nothing to probe
    except Exception as error:
        reasons = unreadable_objects(spark, objects_by_day())
        if reasons:
            raise UnreadableObjects(reasons, raw_path) from error
        raise


def _curated_days_sharing_keys(
    spark: SparkSession, cfg: JobConfig, keys: DataFrame, outside: set[Day]
) -> set[Day]:
    """Days outside ``outside`` whose curated rows have one of ``keys``.

    Without ``cfg.key_lookback_days``, every run lists the whole curated table and reads its key
    column. With it, only the day folders within that many days of ``outside`` are listed and
    read (:func:`_near`). Read with the key's and the partitions' schema, so a curated zone with
    no file yet is simply empty."""
    if cfg.key_lookback_days is not None:
        paths = _near(spark, cfg.curated_path, outside, cfg.key_lookback_days)
    else:
        paths = [cfg.curated_path] if _exists(spark, cfg.curated_path) else []
    if not paths:
        return set()
    key = cfg.spec["record_key"]
    key_type = next(c["type"] for c in cfg.spec["columns"] if c["name"] == key)
    schema = ", ".join([f"`{key}` {key_type}", *[f"`{p}` string" for p in PARTITIONS]])
    curated = spark.read.schema(schema).option("basePath", cfg.curated_path).parquet(*paths)
    rows = curated.join(keys, key, "left_semi").select(*PARTITIONS).distinct().collect()
    return {(r.year, r.month, r.day) for r in rows} - outside


def _near(spark: SparkSession, base: str, days: set[Day], lookback: int) -> list[str]:
    """The day folders under ``base`` within ``lookback`` days of one of ``days``.

    One glob per month of those windows (``year=Y/month=M/day={..}``: one listing of that month's
    folder), so neither this nor the read that follows lists the rest of the table.
    """
    windows: list[tuple[date, date]] = []  # one per run of nearby days
    for day in sorted(days):
        center = _calendar_day(day)
        # within the calendar: a folder of year 0001 or 9999 must not overflow the date arithmetic
        low = center - timedelta(days=min(lookback, (center - date.min).days))
        high = center + timedelta(days=min(lookback, (date.max - center).days))
        if windows and low <= windows[-1][1] + timedelta(days=1):
            windows[-1] = (windows[-1][0], high)
        else:
            windows.append((low, high))
    months: dict[tuple[int, int], list[int]] = {}
    for low, high in windows:
        for offset in range((high - low).days + 1):
            when = low + timedelta(days=offset)
            months.setdefault((when.year, when.month), []).append(when.day)
    fs, jvm = _fs(spark, base)
    found = []
    for (year, month), month_days in sorted(months.items()):
        pattern = "{" + ",".join(f"{d:02d}" for d in month_days) + "}"
        glob = _partition_path(base, (f"{year:04d}", f"{month:02d}", pattern))
        found += [
            status.getPath().toString() for status in fs.globStatus(jvm.org.apache.hadoop.fs.Path(glob)) or []
        ]
    return sorted(found)


def _day_folders_before(spark: SparkSession, base: str, cutoff: date) -> set[Day]:
    """The ``year=/month=/day=`` folders under ``base`` of days before ``cutoff``: one listing of
    the year folders, then one per month folder of the years that reach before it."""
    if not _exists(spark, base):
        return set()
    fs, jvm = _fs(spark, base)
    root = qualified(spark, base)
    years = [
        status.getPath().getName()
        for status in fs.globStatus(jvm.org.apache.hadoop.fs.Path(f"{root}/year=*")) or []
    ]
    found = set()
    for year in years:
        if not re.fullmatch(r"year=\d{4}", year) or int(year[5:]) > cutoff.year:
            continue
        glob = jvm.org.apache.hadoop.fs.Path(f"{root}/{year}/month=*/day=*")
        for status in fs.globStatus(glob) or []:
            day = day_of(f"{status.getPath().toString()}/", root)
            if day is not None and _calendar_day(day) < cutoff:
                found.add(day)
    return found


def _expire_curated_days(
    spark: SparkSession, cfg: JobConfig, cutoff: date, raw_days: set[Day], result: RunResult
) -> None:
    """Remove the curated and quarantine days before ``cutoff``: those of the raw days before it,
    and any other curated or quarantine day folder before it. The catalog follows in ``publish``
    (``result.expired_days``), the raw days last (:func:`_expire_raw_days`)."""
    days = set(raw_days)
    for base in (cfg.curated_path, cfg.quarantine_path):
        days |= _day_folders_before(spark, base, cutoff)
    for day in days:
        for base in (cfg.curated_path, cfg.quarantine_path):
            delete_path(spark, _partition_path(base, day))
    result.expired_days = sorted(days)


#: The most keys S3's DeleteObjects takes in one call.
DELETE_OBJECTS_LIMIT = 1000


def delete_s3_objects(s3: Any, paths: list[str]) -> None:
    """Delete ``s3://bucket/key`` objects with DeleteObjects, 1,000 keys a call: exactly these keys,
    with ``s3:DeleteObject`` on them and nothing else of the bucket (no listing of a folder or
    writing of a marker by a file system). In a versioned bucket each gets a delete marker; its
    versions expire with the bucket's noncurrent versions. A key S3 did not delete fails the run,
    named with S3's error."""
    by_bucket: dict[str, list[str]] = {}
    for path in paths:
        bucket, _, key = path.removeprefix("s3://").partition("/")
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in sorted(by_bucket.items()):
        for start in range(0, len(keys), DELETE_OBJECTS_LIMIT):
            batch = keys[start : start + DELETE_OBJECTS_LIMIT]
            response = s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            if errors := response.get("Errors"):
                named = ", ".join(
                    f"s3://{bucket}/{e['Key']} ({e['Code']}: {e['Message']})" for e in errors[:5]
                )
                raise RuntimeError(f"DeleteObjects left {len(errors)} object(s) past the retention: {named}")


def _expire_raw_days(spark: SparkSession, cfg: JobConfig, expired: dict[str, Day]) -> None:
    """Last of a run: the raw objects past the retention that the run listed (and counted), each
    with its day, once
    the curated zone and the catalog no longer hold their days. On S3 through DeleteObjects
    (:func:`delete_s3_objects`); in a local zone (the tests, the demo) through the file system,
    with each day folder left empty."""
    if not expired:
        return
    if cfg.raw_path.startswith("s3://"):
        import boto3

        delete_s3_objects(boto3.client("s3"), sorted(expired))
        return
    for path in expired:
        delete_path(spark, path)
    for day in set(expired.values()):
        folder = _partition_path(cfg.raw_path, day)
        if not list_objects(spark, folder):
            delete_path(spark, folder)


def _calendar_day(day: Day) -> date:
    return date(int(day[0]), int(day[1]), int(day[2]))


def _days(texts: list[str]) -> set[Day]:
    """Days written ``2024-05-01`` (as the counts' aggregate collects them) as ``Day`` tuples."""
    return {(t[:4], t[5:7], t[8:]) for t in texts}


def files_per_day(day_bytes: dict[Day, int], target_file_size_mib: float) -> dict[Day, int]:
    """How many files each day is written as: its raw bytes over the target file size, at least one."""
    target = target_file_size_mib * 1024 * 1024
    return {day: max(1, math.ceil(size / target)) for day, size in day_bytes.items()}


def _partition_path(base: str, day: Day) -> str:
    return f"{base.rstrip('/')}/year={day[0]}/month={day[1]}/day={day[2]}"


def _written(spark: SparkSession, base: str, days: set[Day]) -> tuple[dict[Day, int], int]:
    """(rows per day, files) of the Parquet partitions of ``days`` under ``base``: one Spark job
    that reads footers only, and the files from the same file index."""
    if not days:
        return {}, 0
    table = spark.read.option("basePath", base).parquet(*[_partition_path(base, d) for d in sorted(days)])
    rows = {(r.year, r.month, r.day): int(r["count"]) for r in table.groupBy(*PARTITIONS).count().collect()}
    return rows, len(table.inputFiles())


def _publish_nothing(result: RunResult) -> None:
    """The tests', the demo's and the benchmarks' ``publish``: no catalog, metrics or summary."""


def run(
    spark: SparkSession, cfg: JobConfig, *, publish: Callable[[RunResult], None] = _publish_nothing
) -> RunResult:
    """Curate the days with new raw objects (module docstring); ``publish`` gets the result before
    the manifest records those objects, so its failure fails the run and the next run redoes it."""
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    # Partition values stay strings ("05", not 5), as the catalog declares them.
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    # The validated rows are cached once and read three times; compressing that cache cost more
    # time than it saved memory (make bench). It spills to disk when memory runs short.
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    result = RunResult()
    objects = list_objects(spark, cfg.raw_path)
    root = qualified(spark, cfg.raw_path)
    day_by_path = {p: day_of(p, root) for p in objects}
    # Days past the retention: out of everything below (not read, curated or widened to), and out
    # of the curated and quarantine zones before anything is read from them.
    expired: dict[str, Day] = {}  # raw object -> its day
    if (cutoff := cfg.retention_cutoff()) is not None:
        result.first_day_kept = cutoff.isoformat()
        expired = {p: d for p, d in day_by_path.items() if d is not None and _calendar_day(d) < cutoff}
        for path in expired:
            del objects[path], day_by_path[path]
        result.expired_objects = len(expired)
        _expire_curated_days(spark, cfg, cutoff, set(expired.values()), result)
    manifest = read_manifest(spark, cfg.manifest_path)
    result.stale_staging = remove_stale_staging(spark, cfg.curated_path, cfg.quarantine_path)
    # An object outside a day folder of the prefix has no day to rebuild. It is reported (and
    # alarmed on) and kept out of the manifest, so each run reports it until it is moved into
    # its day's folder, and the run after that curates it.
    unseen = [p for p, stored in objects.items() if manifest.objects.get(p) != stored]
    result.unplaced_objects = sorted(p for p in unseen if day_by_path[p] is None)
    new = {p: d for p in unseen if (d := day_by_path[p]) is not None}  # object -> its day
    result.new_objects = len(new)
    folders = {d for d in day_by_path.values() if d is not None}
    # A killed run's days, rebuilt whole again: some may have been left empty.
    rebuilding = read_rebuilding(spark, cfg.manifest_path)
    requested = rebuilding & folders
    result.resumed_days = sorted(requested)
    if cfg.rebuild is not None:
        low, high = cfg.rebuild
        requested |= {d for d in folders if low <= _calendar_day(d) <= high}
    if not new and not requested:
        publish(result)
        if rebuilding:  # days whose raw folders are gone since: nothing to rebuild them from
            delete_path(spark, rebuilding_path(cfg.manifest_path))
        _expire_raw_days(spark, cfg, expired)
        return result
    days: set[Day] = set(new.values()) | requested
    raw_bytes: dict[Day, int] = {}  # per day, for file sizing
    for path, stored in objects.items():
        if (day := day_by_path[path]) is not None:
            raw_bytes[day] = raw_bytes.get(day, 0) + stored.size
    key = cfg.spec["record_key"]

    def objects_read() -> dict[Day, list[str]]:
        return {d: sorted(p for p, of in day_by_path.items() if of == d) for d in days}

    # The raw objects are read here, into the cache, and nowhere else.
    with _naming_unreadable_objects(spark, cfg.raw_path, objects_read):
        while True:
            checked = validate_and_cast(_read_raw(spark, cfg.raw_path, days, cfg.spec), cfg.spec).cache()
            valid, rejected = split_valid(checked)
            # Widen to days holding an older (or newer) curated version of a key seen here.
            extra = _curated_days_sharing_keys(spark, cfg, valid.select(key), days)
            if extra - folders:
                raise CuratedDaysWithoutRaw(extra - folders, cfg.raw_path)
            if not extra:
                break
            checked.unpersist()
            days |= extra
        # One pass over the cached rows for both counts and the days that have valid rows, and
        # the days that have rejected rows.
        day_text = F.concat_ws("-", *PARTITIONS)
        totals = checked.agg(
            F.count(F.lit(1)).alias("read"),
            F.count(F.when(F.col(REASON) != "", True)).alias("quarantined"),
            F.collect_set(F.when(F.col(REASON) == "", day_text)).alias("days"),
            F.collect_set(F.when(F.col(REASON) != "", day_text)).alias("quarantine_days"),
        ).first()
    assert totals is not None
    result.rows_read, result.rows_quarantined = int(totals["read"]), int(totals["quarantined"])
    result.days = sorted(days)
    output_days, quarantined_days = _days(totals["days"]), _days(totals["quarantine_days"])

    curated = to_curated(valid, cfg.spec)
    if len(days) > 1 and spans_days(valid, key, cfg.spec["event_time"]):
        # A version of a key moved to another day: the latest one wins across days (its own shuffle),
        # and a day whose every key moved away gets no rows (rare: one more pass to find such days).
        curated = latest_per_key(curated, key)
        output_days = {(r.year, r.month, r.day) for r in curated.select(*PARTITIONS).distinct().collect()}
    # Toward the target file size: each day gets as many files as its raw bytes call for, each
    # written by a task of its own, and deduplication runs inside that same shuffle.
    day_bytes = {day: raw_bytes.get(day, 0) for day in days}
    bytes_per_row = max(sum(day_bytes.values()) / max(result.rows_read, 1), 1.0)
    rows_per_file = max(1000, math.floor(cfg.target_file_size_mib * 1024 * 1024 / bytes_per_row))
    placed = place_in_files(curated, key, files_per_day(day_bytes, cfg.target_file_size_mib))
    # Before any day is replaced (removed after the manifest records this run's objects).
    write_rebuilding(spark, cfg.manifest_path, days)
    (
        latest_per_key(placed, key, within=(*PARTITIONS, FILE_BUCKET))
        .drop(FILE_BUCKET)
        .write.mode("overwrite")
        .option("maxRecordsPerFile", rows_per_file)
        .partitionBy(*PARTITIONS)
        .parquet(cfg.curated_path)
    )
    # Dynamic overwrite replaces only the days written: a rebuilt day with no rows now (its keys
    # moved to another day, or its rows fail validation now) still holds its earlier files.
    for day in days - output_days:
        delete_path(spark, _partition_path(cfg.curated_path, day))
    # Counted from what was written: Parquet footers only, and no cache of the curated rows.
    written, result.files_written = _written(spark, cfg.curated_path, output_days)
    result.curated_days = sorted(output_days)
    result.rows_written = sum(written.values())
    result.duplicates_dropped = result.rows_read - result.rows_quarantined - result.rows_written
    if result.rows_quarantined:
        (
            to_quarantine(rejected, cfg.spec)
            .repartition(*PARTITIONS)
            .write.mode("overwrite")
            .partitionBy(*PARTITIONS)
            .parquet(cfg.quarantine_path)
        )
    for day in days - quarantined_days:
        delete_path(spark, _partition_path(cfg.quarantine_path, day))
    result.quarantine_days = sorted(quarantined_days)
    publish(result)
    # Last: a run that failed before this point is re-run on the same objects.
    append_manifest(
        spark,
        cfg.manifest_path,
        manifest,
        {p: objects[p] for p in new},
        cfg.manifest_compact_at,
        listed=objects.keys(),
    )
    delete_path(spark, rebuilding_path(cfg.manifest_path))
    _expire_raw_days(spark, cfg, expired)
    checked.unpersist()
    return result


# --- Glue 5.1 entry point: imports the Glue runtime only when called -----------------------


def _batch_errors(response: dict[str, Any], expected: str) -> list[dict[str, Any]]:
    return [e for e in response.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != expected]


def _sync_partitions(
    glue: Any, database: str, table: str, location: str, *, present: list[Day], emptied: list[Day]
) -> None:
    """The catalog lists the rebuilt days that hold files, each with the table's columns, and not
    the days left empty.

    BatchCreatePartition for ``present``, so new days are queryable in Athena and Spectrum at once;
    BatchUpdatePartition for those of them that existed, so a day rebuilt after the dataset file
    changed (a column added, a type changed) is described as its new files are, not as the table
    was when the day was first registered; BatchDeletePartition for ``emptied`` (a missing one is
    fine), so a day the run removed is not left as an empty partition. All are idempotent: a
    retried run repeats them harmlessly.
    """
    if present:
        descriptor = glue.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]

    def partition_input(values: list[str]) -> dict[str, Any]:
        path = _partition_path(location, (values[0], values[1], values[2])) + "/"
        return {"Values": values, "StorageDescriptor": {**descriptor, "Location": path}}

    for start in range(0, len(present), 100):  # the APIs' limit per call
        inputs = [partition_input(list(day)) for day in present[start : start + 100]]
        response = glue.batch_create_partition(
            DatabaseName=database, TableName=table, PartitionInputList=inputs
        )
        if errors := _batch_errors(response, "AlreadyExistsException"):
            raise RuntimeError(f"BatchCreatePartition failed for {table}: {errors}")
        if existed := [e["PartitionValues"] for e in response.get("Errors", [])]:
            entries = [{"PartitionValueList": v, "PartitionInput": partition_input(v)} for v in existed]
            updated = glue.batch_update_partition(DatabaseName=database, TableName=table, Entries=entries)
            if errors := updated.get("Errors"):
                raise RuntimeError(f"BatchUpdatePartition failed for {table}: {errors}")
    for start in range(0, len(emptied), 25):  # the API's limit per call
        values = [{"Values": list(day)} for day in emptied[start : start + 25]]
        response = glue.batch_delete_partition(
            DatabaseName=database, TableName=table, PartitionsToDelete=values
        )
        if errors := _batch_errors(response, "EntityNotFoundException"):
            raise RuntimeError(f"BatchDeletePartition failed for {table}: {errors}")


def catalog_days_before(glue: Any, database: str, table: str, first_day_kept: str) -> list[Day]:
    """The days of ``table``'s partitions before ``first_day_kept``: the ones the run removed, and
    any a run that failed before publishing left behind with its files already gone (the next
    run would no longer find those days in any zone)."""
    days = []
    pages = glue.get_paginator("get_partitions").paginate(
        DatabaseName=database, TableName=table, ExcludeColumnSchema=True
    )
    for page in pages:
        for partition in page["Partitions"]:
            year, month, day = partition["Values"]
            if f"{year}-{month}-{day}" < first_day_kept:
                days.append((year, month, day))
    return sorted(days)


def _publish_metrics(cloudwatch: Any, namespace: str, dataset: str, result: RunResult) -> None:
    names = {
        "RowsRead": result.rows_read,
        "RowsWritten": result.rows_written,
        "RowsQuarantined": result.rows_quarantined,
        "DuplicatesDropped": result.duplicates_dropped,
        "UnplacedObjects": len(result.unplaced_objects),
        "ExpiredObjects": result.expired_objects,
    }
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": n,
                "Dimensions": [{"Name": "dataset", "Value": dataset}],
                "Value": v,
                "Unit": "Count",
            }
            for n, v in names.items()
        ],
    )


def main(argv: list[str]) -> None:
    """The Glue entry point: :func:`run`, which hands its result to the catalog, the metrics and the
    run summary (``publish``) before it records the run's objects as processed."""
    import boto3
    from awsglue.context import GlueContext  # type: ignore[import-not-found]
    from awsglue.job import Job  # type: ignore[import-not-found]
    from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    from pyspark.context import SparkContext

    args = getResolvedOptions(
        argv,
        [
            "JOB_NAME",
            "JOB_RUN_ID",  # passed to every Glue Spark run; the state machine has it from startJobRun
            "dataset_spec",
            "raw_path",
            "curated_path",
            "quarantine_path",
            "manifest_path",
            "target_file_size_mib",
            "curated_database",
            "curated_table",
            "quarantine_table",
            "metrics_namespace",
            "run_summary_path",
            "key_lookback_days",
            "rebuild_days",
            "retention_days",
        ],
    )
    glue_context = GlueContext(SparkContext.getOrCreate())
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    spec = json.loads(args["dataset_spec"])
    cfg = JobConfig(
        spec=spec,
        raw_path=args["raw_path"],
        curated_path=args["curated_path"],
        quarantine_path=args["quarantine_path"],
        manifest_path=args["manifest_path"],
        target_file_size_mib=float(args["target_file_size_mib"]),
        key_lookback_days=None if args["key_lookback_days"] == "all" else int(args["key_lookback_days"]),
        rebuild=rebuild_range(args["rebuild_days"]),
        retention_days=None if args["retention_days"] == "none" else int(args["retention_days"]),
    )

    def publish(result: RunResult) -> None:
        """The catalog, the counts and the run summary, before the manifest records the run's
        objects: if any of them fails, the retried run rebuilds the same days and does them all,
        instead of finding nothing new and leaving the days unregistered and unchecked."""
        print(json.dumps({"dataset": spec["name"], **result.as_dict()}))
        glue = boto3.client("glue")
        for table, location, present in (
            (args["curated_table"], cfg.curated_path, result.curated_days),
            (args["quarantine_table"], cfg.quarantine_path, result.quarantine_days),
        ):
            # days left empty by the run, and days past the retention
            emptied = sorted((set(result.days) - set(present)) | set(result.expired_days))
            if result.first_day_kept is not None:
                before = catalog_days_before(glue, args["curated_database"], table, result.first_day_kept)
                emptied = sorted(set(emptied) | set(before))
            _sync_partitions(
                glue, args["curated_database"], table, location, present=present, emptied=emptied
            )
        _publish_metrics(boto3.client("cloudwatch"), args["metrics_namespace"], spec["name"], result)
        write_run_summary(
            glue_context.spark_session, args["run_summary_path"], args["JOB_RUN_ID"], spec["name"], result
        )

    run(glue_context.spark_session, cfg, publish=publish)
    job.commit()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv)
