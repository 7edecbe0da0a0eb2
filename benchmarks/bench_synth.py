"""`make synth` wall time (installed venv) for the default stage and with every component on, and
the peak memory of its largest process (the CDK CLI, the Python app, or jsii's Node).

And how full the stacks are at the stage's capacity that docs/add-a-dataset.md states: `prod`
with every component on and ``CAPACITY`` datasets (the shipped orders, the second test dataset and
copies of it under other names), each template's resources, outputs and bytes against
CloudFormation's 500, 200 and 1,000,000, each stack with its nested stacks against the 2,500
resources one operation touches, and the dashboard's widgets against CloudWatch's 500.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datalake.assembly import joined_json, stack_template_files  # noqa: E402
from datalake.dataset import DATASETS_DIR  # noqa: E402

#: The datasets a stage holds, as docs/add-a-dataset.md says.
CAPACITY = 60
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


@dataclass(frozen=True)
class Template:
    """One template of ``cdk.out`` as written: its counts against CloudFormation's quotas."""

    resources: int
    outputs: int
    size: int

    @classmethod
    def read(cls, path: Path) -> Template:
        template = json.loads(path.read_text())
        return cls(len(template["Resources"]), len(template.get("Outputs", {})), path.stat().st_size)


def stack_templates() -> dict[str, tuple[Template, list[Template]]]:
    """Each stack of ``cdk.out``: its template and those of the stacks nested in it (found from
    its manifest and templates: the directory also keeps the files of earlier synths)."""
    return {
        name: (Template.read(path), [Template.read(inner) for inner in nested])
        for name, (path, nested) in stack_template_files(ROOT / "cdk.out").items()
    }


def dashboard_widgets() -> int:
    """The widgets of the dashboard of ``cdk.out`` (its one ``AWS::CloudWatch::Dashboard``)."""
    (body,) = [
        resource["Properties"]["DashboardBody"]
        for path, _ in stack_template_files(ROOT / "cdk.out").values()
        for resource in json.loads(path.read_text())["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    return len(joined_json(body)["widgets"])


def capacity() -> dict[str, Any]:
    """``make synth`` of `prod`, every component on, with ``CAPACITY`` datasets: each stack's
    counts and, over every template, nested ones too, the highest against each quota."""
    second = ROOT / "tests" / "datasets" / "web_storefront_page_views_by_session_and_pages.json"
    with tempfile.TemporaryDirectory(prefix="capacity-") as folder:
        datasets = Path(folder)
        for source in (DATASETS_DIR / "orders.json", second):
            (datasets / source.name).write_text(source.read_text())
        for i in range(CAPACITY - 2):
            copy = {**json.loads(second.read_text()), "name": f"capacity_{i:02d}"}
            (datasets / f"capacity_{i:02d}.json").write_text(json.dumps(copy))
        seconds, peak = measure(f"{ALL_ON} -c datasets_dir={datasets}", stage="prod")
    stacks = stack_templates()
    every = [t for own, nested in stacks.values() for t in (own, *nested)]
    operation = {
        name: own.resources + sum(t.resources for t in nested) for name, (own, nested) in stacks.items()
    }
    return {
        "capacity_datasets": CAPACITY,
        "capacity_synth_s": round(seconds, 1),
        "capacity_synth_peak_mib": round(peak),
        "capacity_stacks": {
            name: {
                "resources": own.resources,
                "outputs": own.outputs,
                "template_bytes": own.size,
                "nested_stacks": len(nested),
                "with_nested_resources": operation[name],
                **(
                    {
                        "largest_nested_resources": max(t.resources for t in nested),
                        "largest_nested_bytes": max(t.size for t in nested),
                    }
                    if nested
                    else {}
                ),
            }
            for name, (own, nested) in stacks.items()
        },
        "capacity_max_stack_resources": max(t.resources for t in every),
        "capacity_max_outputs": max(t.outputs for t in every),
        "capacity_max_template_bytes": max(t.size for t in every),
        "capacity_max_operation_resources": max(operation.values()),
        "capacity_dashboard_widgets": dashboard_widgets(),
    }


def run() -> dict[str, Any]:
    measure("")  # warm the file cache and node_modules once; not counted
    figures: dict[str, Any] = {}
    for name, context in (("default", ""), ("all_components", ALL_ON)):
        seconds, peak = measure(context)
        stacks = len(stack_template_files(ROOT / "cdk.out"))
        figures[f"synth_{name}_s"] = round(seconds, 1)
        figures[f"synth_{name}_peak_mib"] = round(peak)
        figures[f"synth_{name}_stacks"] = stacks
    figures.update(capacity())
    # Leave cdk.out as `make synth` leaves it.
    measure("")
    return figures


if __name__ == "__main__":
    print(run())
