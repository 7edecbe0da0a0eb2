"""`make bench`: run every benchmark once, print a table, write benchmarks/results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_job, bench_transform

RESULTS = Path(__file__).resolve().parent / "results.json"


def main() -> int:
    results: dict[str, object] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    results.update(bench_transform.run())
    results.update(bench_job.run_bench(int(os.environ.get("BENCH_ORDERS", "1000000"))))
    width = max(len(k) for k in results)
    print(f"{'figure':<{width}}  value")
    for key, value in results.items():
        if isinstance(value, dict):
            for sub, figures in value.items():
                print(f"{key + ' ' + sub:<{width}}  {figures}")
        else:
            print(f"{key:<{width}}  {value}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nwritten to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
