"""`make bench` bookkeeping: a subset run keeps the other figures; stray arguments are refused;
every test module has its part in the timing of `make test`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_synth, bench_tests
from benchmarks import run as bench_run


@pytest.fixture
def fake_benches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    results = tmp_path / "results.json"
    monkeypatch.delenv("BENCH_ONLY", raising=False)  # set when make bench runs these tests
    monkeypatch.setattr(bench_run, "RESULTS", results)
    monkeypatch.setattr(
        bench_run, "BENCHES", {"synth": lambda: {"synth_default_s": 5.0}, "job": lambda: {"job_s": 15.0}}
    )
    return results


def test_a_subset_run_replaces_only_its_own_figures(
    fake_benches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the results of a full run
    assert bench_run.main([]) == 0
    full = json.loads(fake_benches.read_text())
    assert set(full["measured_at_by_bench"]) == {"synth", "job"}
    # WHEN only the job is run again, and it measures something else
    monkeypatch.setitem(bench_run.BENCHES, "job", lambda: {"job_s": 14.0})
    monkeypatch.setenv("BENCH_ONLY", "job")
    assert bench_run.main([]) == 0
    # THEN the synth figure and its time are kept, the job's are new
    subset = json.loads(fake_benches.read_text())
    assert (subset["synth_default_s"], subset["job_s"]) == (5.0, 14.0)
    assert subset["measured_at_by_bench"]["synth"] == full["measured_at_by_bench"]["synth"]
    assert subset["measured_at_by_bench"]["job"] == subset["measured_at"]


def test_arguments_and_unknown_benches_are_refused(
    fake_benches: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_run.main(["--only", "job"]) == 2
    assert "BENCH_ONLY=synth,job" in capsys.readouterr().err
    monkeypatch.setenv("BENCH_ONLY", "jobs")
    assert bench_run.main([]) == 2
    assert "unknown ['jobs']" in capsys.readouterr().err
    assert not fake_benches.exists()


def test_every_test_module_is_in_a_part_of_the_suites_timing() -> None:
    # a module in no part would stop `make bench` at its end, after the whole suite has run
    modules = sorted(p.stem for p in Path(__file__).parent.glob("test_*.py"))
    assert [m for m in modules if bench_tests.part_of(f"tests.{m}")]  # (raises for one in none)
    listed = [m for part in bench_tests.PARTS.values() for m in part]
    assert sorted(listed) == modules


def test_the_docs_state_the_capacity_the_bench_synthesizes() -> None:
    # `make bench` synthesizes a stage of CAPACITY datasets against every quota; the README and
    # the guide to adding a dataset give that number, and change with it
    root = Path(__file__).resolve().parent.parent
    for doc in ("README.md", "docs/add-a-dataset.md"):
        text = " ".join((root / doc).read_text().split())
        assert f"stage holds {bench_synth.CAPACITY} datasets" in text, doc
