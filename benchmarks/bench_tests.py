"""`make test` wall time (installed venv), and where it goes by part (one run; JUnit times per test).

A module-scoped synth is paid by the first test that asks for it, so a part's time includes the
synths it triggered first. ``make test`` runs on two workers, so the parts add up to more than its
wall time: the time each part keeps a worker busy.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "templates": (
        "test_templates",
        "test_fork",
        "test_foundation",
        "test_governance",
        "test_ingestion_stack",
        "test_processing_stack",
        "test_consumption",
        "test_dataset_config",
        "test_diagram",
        "test_cost",
        "test_ci",
        "test_benchmarks",
    ),
    "nag": ("test_compliance",),
    "lambda": (
        "test_firehose_transform",
        "test_custom_resources",
        "test_trail_check",
        "test_glue_log_retention",
        "test_replay",
        "test_erase",
        "test_backfill",
    ),
    "spark": ("test_raw_to_curated",),
    "integration": ("test_local_run", "test_pipeline_execution"),
}


def part_of(classname: str) -> str:
    """The part of a JUnit classname such as ``tests.test_compliance`` or ``tests.test_x.TestY``."""
    segments = set(classname.split("."))
    for part, modules in PARTS.items():
        if segments & set(modules):
            return part
    raise KeyError(f"{classname}: add its module to benchmarks/bench_tests.PARTS")


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        subprocess.run(
            ["make", "--no-print-directory", "test"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTEST_ADDOPTS": f"-q --junitxml={report}"},
        )
        wall = time.perf_counter() - start
        cases = ET.parse(report).getroot().iter("testcase")
        parts = dict.fromkeys(PARTS, 0.0)
        count = 0
        for case in cases:
            parts[part_of(case.get("classname", ""))] += float(case.get("time", 0))
            count += 1
    return {
        "tests": count,
        "make_test_s": round(wall, 1),
        "pytest_by_part_s": {part: round(seconds, 1) for part, seconds in parts.items()},
    }


if __name__ == "__main__":
    print(run())
