"""Firehose transform throughput on a 6 MB batch of ~1 KB records, against a floor measured in the
same run (base64-decode, json.loads, json.dumps, base64-encode per record); and the handler's cold
import time."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "lambda" / "firehose_transform")]

from records import RecordValidator  # noqa: E402
from transform import transform_event  # noqa: E402

from datalake.dataset import DATASETS_DIR, load_dataset  # noqa: E402
from datalake.sample import payloads  # noqa: E402

BATCH_BYTES = 6 * 1024 * 1024


def make_event() -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    size = 0
    for i, payload in enumerate(payloads(20000, defects=False, max_items=14)):
        data = base64.b64encode(payload).decode()
        if size + len(data) > BATCH_BYTES * 0.95:
            break
        records.append({"recordId": f"r{i}", "approximateArrivalTimestamp": 1714521605000, "data": data})
        size += len(data)
    return {"records": records}


def floor(event: dict[str, Any]) -> None:
    for r in event["records"]:
        obj = json.loads(base64.b64decode(r["data"]))
        base64.b64encode(json.dumps(obj).encode())


def best_of(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cold_import_seconds() -> float:
    from cdk_constructs.ingestion import stage_transform

    # the deployment package of orders: the modules and the spec the handler reads at import
    with tempfile.TemporaryDirectory() as root:
        package = stage_transform(load_dataset(DATASETS_DIR / "orders.json"), Path(root))
        return _cold_import(package)


def _cold_import(package: Path) -> float:
    """Seconds to import the handler from ``package`` in a fresh interpreter, best of five."""
    env = dict(os.environ, PYTHONPATH=str(package))
    code = "import time; t=time.perf_counter(); import handler; print(time.perf_counter()-t)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(5)
    ]
    return min(runs)


def run() -> dict[str, float]:
    validator = RecordValidator(load_dataset(DATASETS_DIR / "orders.json").to_spec())
    event = make_event()
    n = len(event["records"])
    now = datetime.now(UTC)
    # Interleaved, best of nine each: a busy machine slows both sides alike.
    floors, transforms = [], []
    for _ in range(9):
        floors.append(best_of(lambda: floor(event), repeat=1))
        transforms.append(
            best_of(lambda: transform_event(event, validator, now=now, fallback_stream="bench"), 1)
        )
    t_floor, t_transform = min(floors), min(transforms)
    mean_size = sum(len(base64.b64decode(r["data"])) for r in event["records"]) / n
    return {
        "transform_records": n,
        "transform_record_bytes_mean": round(mean_size),
        "transform_floor_records_per_s": round(n / t_floor),
        "transform_records_per_s": round(n / t_transform),
        "transform_vs_floor": round(t_floor / t_transform, 3),
        "handler_cold_import_s": round(cold_import_seconds(), 4),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
