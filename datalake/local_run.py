"""Run the lake's processing core on this machine: transform, Glue job, data quality, Athena SQL.

    python -m datalake.local_run --events FILE --dataset orders --workdir DIR

``FILE`` holds one raw payload per line, exactly as a producer would send it to Firehose (lines
may be invalid: they are rejected and counted, never fatal). The run writes what the cloud lake
would hold under ``DIR`` (``raw/``, ``curated/``) and ``DIR/summary.json``. The exit status is
non-zero only when the run itself cannot happen (no such file or dataset), with one clear line.

Everything is the shipped code: the Firehose transform, the Glue job on local Spark, the DQDL
rules' SQL twins and the Athena named queries translated by sqlglot and run by DuckDB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datalake import sql
from datalake.dataset import (
    CURATED_PARTITIONS,
    DATASETS_DIR,
    Dataset,
    DatasetConfigError,
    load_datasets,
)
from datalake.local_firehose import deliver
from datalake.quality import rules
from datalake.sample import payloads as sample_payloads

ROOT = Path(__file__).resolve().parent.parent
JOB_DIR = ROOT / "glue_jobs" / "raw_to_curated"

Progress = Callable[[str], None]
DEMO_START = datetime(2026, 11, 18, tzinfo=UTC)
DEMO_ARRIVAL = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class Summary:
    dataset: str
    records_in: int = 0
    transform_ok: int = 0
    transform_rejected: int = 0
    transform_failed: int = 0
    invocations: int = 0
    curated_rows: int = 0
    quarantined_rows: int = 0
    duplicates_dropped: int = 0
    #: Raw objects of event days past the dataset's retention, removed by the job, not curated.
    expired_objects: int = 0
    curated_files: int = 0
    data_quality: dict[str, bool] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


LOG_CONFIG = Path(__file__).resolve().parent / "spark-log4j2.properties"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def spark_session(app: str = "datalake-local-run", *, shuffle_partitions: int = 4, **config: str) -> Any:
    """A local SparkSession with Glue 5.1's relevant settings (UTC), bound to loopback only.

    The local runner, the tests and the benchmarks all use it; ``config`` adds Spark settings."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
    )
    # Spark's own start-up lines (its default log level, no native Hadoop library) are noise here.
    java_options = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    config = {**config, DRIVER_JAVA_OPTIONS: f"{java_options} {config.get(DRIVER_JAVA_OPTIONS, '')}".strip()}
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _job_module() -> Any:
    if str(JOB_DIR) not in sys.path:
        sys.path.insert(0, str(JOB_DIR))
    import job

    return job


def duckdb_over(curated_dir: Path, dataset: Dataset) -> Any:
    """A DuckDB connection where ``<dataset>`` is the curated Parquet table as its catalog table
    declares it (UTC session): the declared columns, the metadata and the partitions (strings).

    Read by column name, as Athena reads Parquet, so days curated before a column was added show
    it as null, and a column no longer declared is not shown. (DuckDB's own default takes the
    first file's columns: a column added later silently went missing.)"""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    declared = [(name, _duckdb_type(glue_type)) for name, glue_type, _ in dataset.glue_columns()]
    declared += [(p, "VARCHAR") for p in CURATED_PARTITIONS]
    files = curated_dir / dataset.name
    if any(files.rglob("*.parquet")):
        glob = str(files / "**" / "*.parquet")
        source = f"read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        select = ", ".join(f'"{n}"' if n in present else f'NULL::{t} AS "{n}"' for n, t in declared)
        con.execute(f'CREATE VIEW "{dataset.name}" AS SELECT {select} FROM {source}')
    else:  # nothing curated yet: an empty table with the declared columns and types
        columns = ", ".join(f'"{n}" {t}' for n, t in declared)
        con.execute(f'CREATE TABLE "{dataset.name}" ({columns})')
    return con


def _duckdb_type(glue_type: str) -> str:
    """A Glue type as DuckDB names it (sqlglot quotes keyword fields); a timestamp, nested too, as
    ``TIMESTAMPTZ``, the type DuckDB reads from the job's Parquet (instants in UTC)."""
    from sqlglot import exp

    def with_zone(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMP:
            return exp.DataType.build("TIMESTAMPTZ")
        return node

    return exp.DataType.build(glue_type, dialect="hive").transform(with_zone).sql(dialect="duckdb")


def evaluate_quality(con: Any, dataset: Dataset) -> dict[str, bool]:
    """Each DQDL rule of the dataset, evaluated through its SQL twin on the curated table."""
    return {
        rule.dqdl: bool(con.execute(rule.sql.replace("{table}", f'"{dataset.name}"')).fetchone()[0])
        for rule in rules(dataset)
    }


def run_queries(
    con: Any, dataset: Dataset, queries: Sequence[sql.SqlFile] | None = None
) -> dict[str, QueryResult]:
    """The Athena named queries that read this dataset's curated table alone (all of them when
    ``queries`` is not given), translated from Trino to DuckDB, over the curated table."""
    if queries is None:
        queries = [q for q in sql.load("athena") if sql.tables_read(q.text) == {dataset.name}]
    results = {}
    for query in queries:
        cursor = con.execute(sql.athena_to_duckdb(query.text))
        columns = [d[0] for d in cursor.description]
        results[query.name] = QueryResult(columns, cursor.fetchall())
    return results


def run_pipeline(
    payloads: list[bytes],
    dataset: Dataset,
    workdir: Path,
    *,
    spark: Any = None,
    arrival: datetime | None = None,
    progress: Progress = lambda _msg: None,
) -> tuple[Summary, dict[str, QueryResult]]:
    """Firehose transform, Glue job, data quality and queries over ``payloads``; returns the summary."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    raw, curated = workdir / "raw", workdir / "curated"
    summary = Summary(dataset=dataset.name)
    summary.paths = {
        "raw": str(raw / dataset.name),
        "rejected": str(raw / f"{dataset.name}_rejected"),
        "curated": str(curated / dataset.name),
        "quarantine": str(curated / dataset.quarantine_name),
        "summary": str(workdir / "summary.json"),
    }

    started = time.perf_counter()
    progress(f"transform: {len(payloads)} payloads through the Firehose transform")
    delivery = deliver(payloads, dataset, raw, arrival=arrival or datetime.now(UTC))
    summary.records_in = delivery.records_in
    summary.transform_ok = delivery.ok
    summary.transform_rejected = delivery.rejected
    summary.transform_failed = delivery.processing_failed
    summary.invocations = delivery.invocations
    summary.seconds["transform"] = round(time.perf_counter() - started, 2)
    progress(
        f"transform: {delivery.ok} ok, {delivery.rejected} rejected in {delivery.invocations} invocations "
        f"({summary.seconds['transform']} s)"
    )

    started = time.perf_counter()
    progress("job: raw to curated on local Spark")
    job = _job_module()
    session = spark or spark_session()
    result = job.run(
        session,
        job.JobConfig(
            spec=dataset.to_spec(),
            raw_path=(raw / dataset.name).as_uri() + "/",
            curated_path=(curated / dataset.name).as_uri() + "/",
            quarantine_path=(curated / dataset.quarantine_name).as_uri() + "/",
            manifest_path=(curated / "_manifests" / dataset.name).as_uri() + "/",
            target_file_size_mib=dataset.processing.target_file_size_mib,
            key_lookback_days=dataset.processing.key_lookback_days,
            retention_days=dataset.governance.retention_days,
        ),
    )
    summary.curated_rows = result.rows_written
    summary.quarantined_rows = result.rows_quarantined
    summary.duplicates_dropped = result.duplicates_dropped
    summary.expired_objects = result.expired_objects
    summary.curated_files = result.files_written
    summary.seconds["job"] = round(time.perf_counter() - started, 2)
    progress(
        f"job: {result.rows_written} curated, {result.rows_quarantined} quarantined, "
        f"{result.duplicates_dropped} duplicates dropped ({summary.seconds['job']} s)"
    )
    if result.expired_objects:
        progress(
            f"job: {result.expired_objects} raw object(s) removed, not curated: their event days are "
            f"before {result.first_day_kept}, past the dataset's retention "
            f"(governance.retention_days={dataset.governance.retention_days})"
        )

    started = time.perf_counter()
    con = duckdb_over(curated, dataset)
    summary.data_quality = evaluate_quality(con, dataset)
    results = run_queries(con, dataset)
    summary.queries = {name: len(r.rows) for name, r in results.items()}
    summary.seconds["quality_and_queries"] = round(time.perf_counter() - started, 2)
    passed = sum(summary.data_quality.values())
    progress(f"quality: {passed}/{len(summary.data_quality)} rules passed; queries: {len(results)} run")
    (workdir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary, results


def report(summary: Summary, results: dict[str, QueryResult], rows: int = 5) -> str:
    """A short human report: counts per stage, rule outcomes, the first rows of every query."""
    lines = [
        f"dataset {summary.dataset}",
        f"  records in           {summary.records_in:>8}",
        f"  transform ok         {summary.transform_ok:>8}",
        f"  transform rejected   {summary.transform_rejected:>8}",
        f"  curated rows         {summary.curated_rows:>8}",
        f"  quarantined rows     {summary.quarantined_rows:>8}",
        f"  duplicates dropped   {summary.duplicates_dropped:>8}",
        *(
            [f"  past the retention   {summary.expired_objects:>8} raw objects"]
            if summary.expired_objects
            else []
        ),
        "data quality",
        *(f"  {'PASS' if ok else 'FAIL'}  {rule}" for rule, ok in summary.data_quality.items()),
    ]
    for name, result in results.items():
        lines.append(f"query {name} ({len(result.rows)} rows)")
        lines.append("  " + " | ".join(result.columns))
        lines += ["  " + " | ".join(str(v) for v in row) for row in result.rows[:rows]]
    lines.append("files")
    lines += [f"  {k:<11}{v}" for k, v in summary.paths.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datalake.local_run", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, help="one raw payload per line")
    source.add_argument(
        "--demo",
        type=int,
        metavar="N",
        help="generate N sample orders (malformed, duplicated and late ones too)",
    )
    parser.add_argument("--dataset", required=True, help="dataset name (config/datasets/<name>.json)")
    parser.add_argument(
        "--workdir", required=True, type=Path, help="where raw/, curated/ and summary.json go"
    )
    parser.add_argument("--datasets-dir", type=Path, default=DATASETS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        datasets = {d.name: d for d in load_datasets(args.datasets_dir)}
    except DatasetConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dataset not in datasets:
        print(
            f"error: unknown dataset {args.dataset!r}; known: {', '.join(sorted(datasets))}", file=sys.stderr
        )
        return 2
    if args.demo is not None and args.dataset != "orders":
        print(
            f"error: --demo generates orders; send {args.dataset}'s events with --events FILE",
            file=sys.stderr,
        )
        return 2
    arrival = None
    if args.demo is not None:
        # Deterministic: three days of orders, delivered on the third, so some arrive late.
        payloads = sample_payloads(args.demo, seed=2026, start=DEMO_START)
        arrival = DEMO_ARRIVAL
        args.workdir.mkdir(parents=True, exist_ok=True)
        (args.workdir / "events.jsonl").write_bytes(
            b"\n".join(p.replace(b"\n", b" ") for p in payloads) + b"\n"
        )
    else:
        try:
            with args.events.open("rb") as handle:
                payloads = [line.rstrip(b"\r\n") for line in handle]
        except OSError as exc:
            print(f"error: cannot read --events {args.events}: {exc.strerror}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    summary, results = run_pipeline(
        payloads,
        datasets[args.dataset],
        args.workdir,
        arrival=arrival,
        progress=lambda m: print(f"[{time.perf_counter() - started:6.1f}s] {m}", flush=True),
    )
    print(report(summary, results))
    print(f"done in {time.perf_counter() - started:.1f} s; summary: {summary.paths['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
