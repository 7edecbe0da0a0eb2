"""`make synth` wall time (installed venv) for the default stage and with every component on, and
the peak memory of its largest process (the CDK CLI, the Python app, or jsii's Node).

And how full the stacks are at the stage's capacity that docs/add-a-dataset.md states: `prod`
with every component on and ``CAPACITY`` datasets (the shipped orders, the second test dataset and
copies of it under other names), each stack's resources and template bytes against
CloudFormation's 500 and 1,000,000.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datalake.assembly import nested_template_files, nested_templates  # noqa: E402
from datalake.dataset import DATASETS_DIR  # noqa: E402

#: The datasets a stage holds, as docs/add-a-dataset.md says.
CAPACITY = 24
#: Every switchable component on; QuickSight needs a principal, any well-formed ARN synthesizes.
ALL_ON = (
    "-c features=all -c quicksight_principal_arn=arn:aws:quicksight:eu-west-1:123456789012:group/default/bi"
)
#: Reports the peak RSS of the largest descendant, in its own process so runs do not mix.
_MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)"
)


def measure(context: str, stage: str = "sandbox") -> tuple[float, float]:
    """(seconds, peak MiB) of one ``make synth`` of ``stage`` with ``CDK_CONTEXT=context``."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            "make",
            "--no-print-directory",
            "synth",
            f"STAGE={stage}",
            f"CDK_CONTEXT={context}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    seconds, peak_kib, rc = float(out[0]), int(out[1]), int(out[2])
    if rc != 0:
        raise RuntimeError(f"make synth CDK_CONTEXT={context!r} failed with exit code {rc}")
    return seconds, peak_kib / 1024


def stack_sizes() -> dict[str, tuple[int, int]]:
    """Each stack of ``cdk.out``, and each stack nested in one (by its template file's name; not
    the stale ones of earlier synths): (resources, template bytes as written)."""
    out = ROOT / "cdk.out"
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {
        name: out / artifact["properties"]["templateFile"]
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    files = nested_template_files(out)
    for path in list(paths.values()):
        for name, _ in nested_templates(out, json.loads(path.read_text()), files):
            paths[name.removesuffix(".template.json")] = out / name
    return {
        name: (len(json.loads(path.read_text())["Resources"]), path.stat().st_size)
        for name, path in paths.items()
    }


def capacity() -> dict[str, Any]:
    """``make synth`` of `prod`, every component on, with ``CAPACITY`` datasets."""
    second = ROOT / "tests" / "datasets" / "web_storefront_page_views_by_session_and_pages.json"
    with tempfile.TemporaryDirectory(prefix="capacity-") as folder:
        datasets = Path(folder)
        for source in (DATASETS_DIR / "orders.json", second):
            (datasets / source.name).write_text(source.read_text())
        for i in range(CAPACITY - 2):
            copy = {**json.loads(second.read_text()), "name": f"capacity_{i:02d}"}
            (datasets / f"capacity_{i:02d}.json").write_text(json.dumps(copy))
        seconds, peak = measure(f"{ALL_ON} -c datasets_dir={datasets}", stage="prod")
    sizes = stack_sizes()
    fullest = max(sizes, key=lambda s: sizes[s][0])
    largest = max(sizes, key=lambda s: sizes[s][1])
    return {
        "capacity_datasets": CAPACITY,
        "capacity_synth_s": round(seconds, 1),
        "capacity_synth_peak_mib": round(peak),
        "capacity_stacks": {name: {"resources": r, "template_bytes": b} for name, (r, b) in sizes.items()},
        "capacity_max_stack_resources": sizes[fullest][0],
        "capacity_fullest_stack": fullest,
        "capacity_max_template_bytes": sizes[largest][1],
        "capacity_largest_template": largest,
    }


def run() -> dict[str, Any]:
    measure("")  # warm the file cache and node_modules once; not counted
    figures: dict[str, Any] = {}
    for name, context in (("default", ""), ("all_components", ALL_ON)):
        seconds, peak = measure(context)
        manifest = json.loads((ROOT / "cdk.out" / "manifest.json").read_text())
        stacks = sum(1 for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack")
        figures[f"synth_{name}_s"] = round(seconds, 1)
        figures[f"synth_{name}_peak_mib"] = round(peak)
        figures[f"synth_{name}_stacks"] = stacks
    figures.update(capacity())
    # Leave cdk.out as `make synth` leaves it.
    measure("")
    return figures


if __name__ == "__main__":
    print(run())
