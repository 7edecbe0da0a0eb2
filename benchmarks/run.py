"""`make bench`: every benchmark once, a table with the targets, and benchmarks/results.json.

BENCH_ORDERS (default 1,000,000) is the number of order records the Spark job reads at least (the
raw zone, after the transform refused the generator's defects); the scaling run adds two inputs
10x and 100x smaller. BENCH_ONLY=job,transform (any of synth, tests, transform, job) runs a subset;
the figures of the other benchmarks stay in results.json as they were, and ``measured_at_by_bench``
says when each was taken.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_job, bench_synth, bench_tests, bench_transform

RESULTS = Path(__file__).resolve().parent / "results.json"

#: (figure, comparison, target, where the target comes from)
TARGETS: list[tuple[str, str, float, str]] = [
    ("synth_default_s", "<=", 20, "issue 8: full synth within 20 s"),
    ("synth_all_components_s", "<=", 20, "issue 8: full synth within 20 s"),
    (
        "capacity_max_stack_resources",
        "<=",
        500,
        "CloudFormation: 500 resources a stack, at the stated capacity",
    ),
    ("capacity_max_outputs", "<=", 200, "CloudFormation: 200 outputs a template, at the stated capacity"),
    (
        "capacity_max_template_bytes",
        "<=",
        1_000_000,
        "CloudFormation: a 1 MB template, at the stated capacity",
    ),
    (
        "capacity_max_operation_resources",
        "<=",
        2_500,
        "CloudFormation: 2,500 resources an operation on a stack and its nested stacks",
    ),
    ("capacity_dashboard_widgets", "<=", 500, "CloudWatch: 500 widgets a dashboard, at the stated capacity"),
    ("make_test_s", "<=", 120, "issue 8: make test within 120 s"),
    ("transform_vs_floor", ">=", 0.5, "issue 3: at least 0.5 of the floor"),
    ("job_vs_plain_copy", ">=", 0.7, "issue 4: at least 0.7 of a plain Spark copy"),
]


def _orders() -> int:
    return int(os.environ.get("BENCH_ORDERS", "1000000"))


BENCHES: dict[str, Callable[[], dict[str, Any]]] = {
    "synth": bench_synth.run,
    "tests": bench_tests.run,
    "transform": bench_transform.run,
    "job": lambda: bench_job.run_bench(_orders(), scaling=(_orders() // 100, _orders() // 10)),
}


def _query_target(results: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    queries = results.get("query_bytes", {}).get("per_query", {})
    return [
        (f"query_bytes {name} {measure}", "<=", 5, f"issue 4: at most 5 % of the raw JSON ({what})")
        for name in queries
        for measure, what in (("pct_of_raw_json", "as JSON"), ("pct_of_raw_gzip", "as stored, gzip"))
    ]


def _value(results: dict[str, Any], figure: str) -> Any:
    if figure.startswith("query_bytes "):
        _, name, key = figure.split()
        return results["query_bytes"]["per_query"][name][key]
    return results.get(figure)


def table(results: dict[str, Any]) -> str:
    lines = []
    width = 58
    for key, value in results.items():
        if isinstance(value, dict):
            for sub, figures in value.items():
                lines.append(f"{key + ' ' + sub:<{width}}  {json.dumps(figures)}")
        else:
            lines.append(f"{key:<{width}}  {value}")
    lines += ["", f"{'target':<{width}}  {'value':>9}  {'goal':>8}  met"]
    for figure, op, goal, source in TARGETS + _query_target(results):
        value = _value(results, figure)
        if value is None:
            continue
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"{figure:<{width}}  {value:>9}  {op}{goal:>6}  {'yes' if met else 'NO'}   ({source})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv:
        print(
            f"benchmarks take no arguments (got {argv}); choose with BENCH_ONLY={','.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    only = [b for b in os.environ.get("BENCH_ONLY", ",".join(BENCHES)).split(",") if b]
    unknown = set(only) - set(BENCHES)
    if unknown:
        print(f"BENCH_ONLY: unknown {sorted(unknown)}; use any of {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # A subset run replaces its own figures only.
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and set(only) != set(BENCHES) else {}
    results: dict[str, Any] = {
        **previous,
        "measured_at": now,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}",
    }
    by_bench = dict.fromkeys(BENCHES, previous.get("measured_at")) if previous else {}
    by_bench.update(previous.get("measured_at_by_bench", {}))
    results["measured_at_by_bench"] = {**by_bench, **dict.fromkeys(only, now)}
    for name in only:
        print(f"bench: {name} ...", flush=True)
        results.update(BENCHES[name]())
    print(table(results))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {os.path.relpath(RESULTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
