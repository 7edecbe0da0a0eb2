"""The raw-to-curated job on local Spark against a plain Spark copy (read JSON, write Parquet) of the
same raw zone, measured in the same run; and the curated files it writes (count and size per day).

The raw zone is produced by the real transform (``datalake.local_firehose``) from generated
orders and cached under ``benchmarks/.data/`` so a second run skips that step.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "glue_jobs" / "raw_to_curated")]

from job import JobConfig, run  # noqa: E402
from transforms import CORRUPT, raw_read_schema  # noqa: E402

from datalake.dataset import DATASETS_DIR, load_dataset  # noqa: E402
from datalake.local_firehose import deliver  # noqa: E402
from datalake.local_run import spark_session as local_spark  # noqa: E402
from datalake.sample import payloads  # noqa: E402

DATA = Path(__file__).resolve().parent / ".data"
ORDERS = load_dataset(DATASETS_DIR / "orders.json")
CHUNK = 100_000


def raw_zone(n: int) -> Path:
    """A raw zone of ``n`` generated orders (with defects), built once and cached."""
    root = DATA / f"raw-v2-{n}"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i, start in enumerate(range(0, n, CHUNK)):
        batch = payloads(min(CHUNK, n - start), seed=1000 + i, first_id=start)
        deliver(batch, ORDERS, root, arrival=datetime(2024, 5, 4, tzinfo=UTC), object_name=f"part-{i:04d}")
    marker.write_text("ok")
    return root


def spark_session() -> Any:
    return local_spark("bench", shuffle_partitions=8, **{"spark.driver.memory": "6g"})


def plain_copy(spark: Any, raw: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    df = spark.read.schema(raw_read_schema(ORDERS.to_spec())).json(str(raw / "orders")).drop(CORRUPT)
    df.write.mode("overwrite").parquet(str(out))
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


def run_bench(n: int) -> dict[str, Any]:
    raw = raw_zone(n)
    spark = spark_session()
    work = DATA / "out"
    shutil.rmtree(work, ignore_errors=True)
    copy_s, copy_rows = plain_copy(spark, raw, work / "copy")
    job_s, result = job_run(spark, raw, work / "job")
    raw_bytes = sum(p.stat().st_size for p in (raw / "orders").rglob("*.json.gz"))
    return {
        "job_input_rows": result.rows_read,
        "job_raw_gzip_mib": round(raw_bytes / 2**20, 1),
        "plain_copy_s": round(copy_s, 1),
        "plain_copy_rows_per_s": round(copy_rows / copy_s),
        "job_s": round(job_s, 1),
        "job_rows_per_s": round(result.rows_read / job_s),
        "job_vs_plain_copy": round(copy_s / job_s, 3),
        "job_rows_written": result.rows_written,
        "job_rows_quarantined": result.rows_quarantined,
        "job_duplicates_dropped": result.duplicates_dropped,
        "job_files_per_day": file_stats(work / "job" / "orders"),
    }


if __name__ == "__main__":
    print(json.dumps(run_bench(int(os.environ.get("BENCH_ORDERS", "1000000"))), indent=2))
