"""The raw-to-curated job on local Spark against a plain Spark copy (read JSON, write Parquet) of the
same raw zone, measured in the same run; the curated files it writes (count and size per day); how
much of them the shipped Athena queries read; and how the job's time grows with its input.
Two partial copies split the job's cost: a validating copy (the plain copy plus the job's
validation only) and a deduplicating copy (the plain copy plus the job's file placement and
deduplication only).
The plain copy is given the job's read schema; the same copy with Spark's defaults (schema
inferred) is timed too, for readers who take "plain" to mean that.

The raw zone is produced by the real transform (``datalake.local_firehose``) from generated
orders and cached under ``benchmarks/.data/`` so a second run skips that step; the cache is keyed
by the code and the dataset file that make it, so a change to any of them makes it again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import statistics
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "glue_jobs" / "raw_to_curated")]

from job import JobConfig, day_of, files_per_day, read_raw, run  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from transforms import (  # noqa: E402
    FILE_BUCKET,
    PARTITIONS,
    RAW_FILE,
    RAW_PATH_DAY,
    curated_columns,
    latest_per_key,
    place_in_files,
    raw_read_schema,
    validate_and_cast,
)

from datalake import sql  # noqa: E402
from datalake.dataset import CURATED_PARTITIONS, DATASETS_DIR, load_dataset  # noqa: E402
from datalake.local_firehose import deliver  # noqa: E402
from datalake.local_run import spark_session as local_spark  # noqa: E402
from datalake.sample import payloads  # noqa: E402

DATA = Path(__file__).resolve().parent / ".data"
#: What the cached raw zone is made from: the generator, the transform, the local Firehose and
#: the dataset file.
RAW_ZONE_SOURCES = (
    ROOT / "datalake" / "sample.py",
    ROOT / "datalake" / "local_firehose.py",
    *sorted((ROOT / "lambda" / "firehose_transform").glob("*.py")),
    DATASETS_DIR / "orders.json",
)
ORDERS = load_dataset(DATASETS_DIR / "orders.json")
CHUNK = 100_000


def raw_zone(n: int) -> Path:
    """A raw zone holding at least ``n`` order records, built once and cached.

    The generated orders carry defects (malformed, invalid, re-sent); the real transform refuses
    the malformed and invalid ones, so orders are generated in chunks until the records it
    delivered, which are what the job reads, reach ``n``."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in RAW_ZONE_SOURCES)).hexdigest()[:12]
    root = DATA / f"raw-{digest}-{n}"
    marker = root / ".complete"
    if marker.exists():
        return root
    for stale in DATA.glob(f"raw-*-{n}"):  # made by other code: never read again
        shutil.rmtree(stale, ignore_errors=True)
    delivered = first_id = i = 0
    while delivered < n:
        # about 6 % are refused: ask for a little more than is missing, at most one chunk
        size = min(CHUNK, (n - delivered) * 108 // 100 + 100)
        batch = payloads(size, seed=1000 + i, first_id=first_id)
        arrival = datetime(2024, 5, 4, tzinfo=UTC)
        delivered += deliver(batch, ORDERS, root, arrival=arrival, object_name=f"part-{i:04d}").ok
        first_id += size
        i += 1
    marker.write_text(str(delivered))
    return root


def spark_session() -> Any:
    return local_spark("bench", shuffle_partitions=8, **{"spark.driver.memory": "6g"})


def plain_copy(spark: Any, raw: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    df = spark.read.schema(raw_read_schema(ORDERS.to_spec())).json(str(raw / "orders"))
    df.write.mode("overwrite").parquet(str(out))
    elapsed = time.perf_counter() - start
    return elapsed, spark.read.parquet(str(out)).count()


def inferred_copy(spark: Any, raw: Path, out: Path) -> tuple[float, int]:
    """The plain copy with Spark's defaults: the schema is inferred, a first pass over every
    object. Reported beside the copy with the schema given (the target's baseline, the faster)."""
    start = time.perf_counter()
    spark.read.json(str(raw / "orders")).write.mode("overwrite").parquet(str(out))
    elapsed = time.perf_counter() - start
    return elapsed, spark.read.parquet(str(out)).count()


def validating_copy(spark: Any, raw: Path, out: Path) -> tuple[float, int]:
    """The plain copy plus the job's validation, and nothing else: read as the job reads (lines
    parsed with the same schema), validate and cast, write every row with its reason. No
    deduplication, partitioning or counts: no job that validates this way can be faster, so
    ``validating_copy_vs_plain_copy`` bounds ``job_vs_plain_copy``."""
    spec = ORDERS.to_spec()
    start = time.perf_counter()
    checked = validate_and_cast(read_raw(spark, [str(raw / "orders")], spec), spec)
    checked.write.mode("overwrite").parquet(str(out))
    elapsed = time.perf_counter() - start
    return elapsed, spark.read.parquet(str(out)).count()


def deduplicating_copy(spark: Any, raw: Path, out: Path, target_mib: int = 128) -> tuple[float, int]:
    """The plain copy plus what the job does besides validating, and nothing else: read as the job
    reads, each row on its raw folder's day, placed in as many files per day as the job would make
    (raw bytes over the target), deduplicated on the record key within them (latest ingested) and
    written partitioned by day. No validation, cache, counts or manifest: with the validating
    copy, it splits the job's cost between validation and the rest of what the issue asks."""
    spec = ORDERS.to_spec()
    key = spec["record_key"]
    day_bytes: dict[tuple[str, str, str], int] = {}
    for path in (raw / "orders").rglob("*.json.gz"):
        if (day := day_of(str(path), str(raw / "orders"))) is not None:
            day_bytes[day] = day_bytes.get(day, 0) + path.stat().st_size
    start = time.perf_counter()
    rows = read_raw(spark, [str(raw / "orders")], spec)
    on_days = rows.select(
        *[c for c in curated_columns(spec) if c not in PARTITIONS],
        *[F.regexp_extract(RAW_FILE, RAW_PATH_DAY, i + 1).alias(p) for i, p in enumerate(PARTITIONS)],
    )
    placed = place_in_files(on_days, key, files_per_day(day_bytes, target_mib))
    latest = latest_per_key(placed, key, within=(*PARTITIONS, FILE_BUCKET)).drop(FILE_BUCKET)
    latest.write.mode("overwrite").partitionBy(*PARTITIONS).parquet(str(out))
    elapsed = time.perf_counter() - start
    return elapsed, spark.read.parquet(str(out)).count()


def job_run(spark: Any, raw: Path, out: Path, target_mib: int = 128) -> tuple[float, Any]:
    cfg = JobConfig(
        spec=ORDERS.to_spec(),
        raw_path=f"file://{raw}/orders/",
        curated_path=f"file://{out}/orders/",
        quarantine_path=f"file://{out}/orders_quarantine/",
        manifest_path=f"file://{out}/_manifests/orders/",
        target_file_size_mib=target_mib,
    )
    start = time.perf_counter()
    result = run(spark, cfg)
    return time.perf_counter() - start, result


def file_stats(curated: Path) -> dict[str, Any]:
    per_day = {}
    for day in sorted(curated.glob("year=*/month=*/day=*")):
        sizes = [p.stat().st_size / 2**20 for p in day.glob("*.parquet")]
        per_day["/".join(day.parts[-3:])] = {
            "files": len(sizes),
            "mib_min": round(min(sizes), 2),
            "mib_median": round(statistics.median(sizes), 2),
            "mib_max": round(max(sizes), 2),
        }
    return per_day


def _gzip_uncompressed_bytes(path: Path) -> int:
    """The size a gzip file inflates to (its trailer; the raw zone's files are single-member)."""
    with path.open("rb") as f:
        f.seek(-4, os.SEEK_END)
        size: int = struct.unpack("<I", f.read(4))[0]
    if path.stat().st_size >= 2**32:  # the trailer keeps the size modulo 4 GiB: inflate instead
        with gzip.open(path) as g:
            size = sum(len(chunk) for chunk in iter(lambda: g.read(2**20), b""))
    return size


def query_columns(text: str, table_columns: set[str]) -> tuple[set[str], bool]:
    """(table columns a query reads, whether it filters on a partition column), from its AST."""
    tree = sqlglot.parse_one(text, read="trino")
    used = {c.name for c in tree.find_all(exp.Column)} & table_columns
    filtered = any(
        c.name in CURATED_PARTITIONS for where in tree.find_all(exp.Where) for c in where.find_all(exp.Column)
    )
    return used, filtered


def query_bytes(curated: Path, raw: Path) -> dict[str, Any]:
    """Bytes of the column chunks each shipped Athena query must read, against the raw zone's bytes.

    None of the shipped queries filters on a partition, so each reads its columns in every
    partition (a partition filter would only lower the figure). Athena also reads each file's
    footer; that is a few KiB per file and counted too.
    """
    chunks: dict[str, int] = {}
    footers = 0
    for path in curated.rglob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        footers += meta.serialized_size
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                name = column.path_in_schema.split(".")[0]
                chunks[name] = chunks.get(name, 0) + column.total_compressed_size
    raw_files = list((raw / "orders").rglob("*.json.gz"))
    raw_gzip = sum(p.stat().st_size for p in raw_files)
    raw_json = sum(_gzip_uncompressed_bytes(p) for p in raw_files)
    figures: dict[str, Any] = {}
    for query in sql.load("athena"):
        used, filtered = query_columns(query.text, set(chunks))
        assert not filtered, f"{query.name} filters on partitions: count only the partitions it reads"
        read = sum(chunks[c] for c in used) + footers
        figures[query.name] = {
            "columns": sorted(used),
            "mib_read": round(read / 2**20, 2),
            "pct_of_raw_gzip": round(100 * read / raw_gzip, 2),
            "pct_of_raw_json": round(100 * read / raw_json, 2),
        }
    return {
        "raw_gzip_mib": round(raw_gzip / 2**20, 1),
        "raw_json_mib": round(raw_json / 2**20, 1),
        "curated_mib": round(sum(chunks.values()) / 2**20, 1),
        "per_query": figures,
    }


def run_bench(n: int, scaling: tuple[int, ...] = (10_000, 100_000)) -> dict[str, Any]:
    """Job against plain copy on ``n`` orders, then the job alone at the ``scaling`` sizes too."""
    raw = raw_zone(n)
    spark = spark_session()
    work = DATA / "out"
    shutil.rmtree(work, ignore_errors=True)
    # Warm the JVM (JIT, class loading) on a small input first, so neither side pays for it.
    small = raw_zone(min(scaling))
    plain_copy(spark, small, work / "warm-copy")
    job_run(spark, small, work / "warm-job")
    # Alternated, best of two each: a busy machine slows both sides alike.
    copy_runs, inferred_runs, validating_runs, deduplicating_runs, job_runs = [], [], [], [], []
    for i in range(2):
        copy_runs.append(plain_copy(spark, raw, work / f"copy-{i}"))
        inferred_runs.append(inferred_copy(spark, raw, work / f"inferred-copy-{i}"))
        validating_runs.append(validating_copy(spark, raw, work / f"validating-copy-{i}"))
        deduplicating_runs.append(deduplicating_copy(spark, raw, work / f"deduplicating-copy-{i}"))
        shutil.rmtree(work / "job", ignore_errors=True)
        job_runs.append(job_run(spark, raw, work / "job"))
    copy_s, copy_rows = min(copy_runs)
    inferred_s, inferred_rows = min(inferred_runs)
    assert inferred_rows == copy_rows, (inferred_rows, copy_rows)
    validating_s, _ = min(validating_runs)
    deduplicating_s, _ = min(deduplicating_runs)
    job_s, result = min(job_runs, key=lambda r: r[0])
    assert result.rows_read >= n, (result.rows_read, n)
    raw_bytes = sum(p.stat().st_size for p in (raw / "orders").rglob("*.json.gz"))
    figures: dict[str, Any] = {
        "job_input_rows": result.rows_read,
        "job_raw_gzip_mib": round(raw_bytes / 2**20, 1),
        "plain_copy_s": round(copy_s, 1),
        "plain_copy_rows_per_s": round(copy_rows / copy_s),
        "inferred_copy_s": round(inferred_s, 1),
        "validating_copy_s": round(validating_s, 1),
        "validating_copy_vs_plain_copy": round(copy_s / validating_s, 3),
        "deduplicating_copy_s": round(deduplicating_s, 1),
        "deduplicating_copy_vs_plain_copy": round(copy_s / deduplicating_s, 3),
        # The job's time if it cost the plain copy plus each partial copy's extra time, no more.
        "job_s_if_extras_add": round(validating_s + deduplicating_s - copy_s, 1),
        "job_s": round(job_s, 1),
        "job_rows_per_s": round(result.rows_read / job_s),
        "job_vs_plain_copy": round(copy_s / job_s, 3),
        "job_vs_validating_copy": round(validating_s / job_s, 3),
        "job_vs_inferred_copy": round(inferred_s / job_s, 3),
        "job_rows_written": result.rows_written,
        "job_rows_quarantined": result.rows_quarantined,
        "job_duplicates_dropped": result.duplicates_dropped,
        "job_files_per_day": file_stats(work / "job" / "orders"),
        "query_bytes": query_bytes(work / "job" / "orders", raw),
    }
    scale: dict[str, Any] = {}
    for size in (*scaling, n):
        if size == n:
            seconds, rows = job_s, result.rows_read
        else:
            shutil.rmtree(work / "scale", ignore_errors=True)
            seconds, scaled = job_run(spark, raw_zone(size), work / "scale")
            rows = scaled.rows_read
        scale[str(size)] = {"rows": rows, "s": round(seconds, 1), "rows_per_s": round(rows / seconds)}
    figures["job_scaling"] = scale
    spark.stop()
    return figures


if __name__ == "__main__":
    print(json.dumps(run_bench(int(os.environ.get("BENCH_ORDERS", "1000000"))), indent=2))
