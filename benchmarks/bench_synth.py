"""`make synth` wall time (installed venv) for the default stage and with every component on, and
the peak memory of its largest process (the CDK CLI, the Python app, or jsii's Node)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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


def measure(context: str) -> tuple[float, float]:
    """(seconds, peak MiB) of one ``make synth`` with ``CDK_CONTEXT=context``."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, "make", "--no-print-directory", "synth", f"CDK_CONTEXT={context}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    seconds, peak_kib, rc = float(out[0]), int(out[1]), int(out[2])
    if rc != 0:
        raise RuntimeError(f"make synth CDK_CONTEXT={context!r} failed with exit code {rc}")
    return seconds, peak_kib / 1024


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
    # Leave cdk.out as `make synth` leaves it.
    measure("")
    return figures


if __name__ == "__main__":
    print(run())
