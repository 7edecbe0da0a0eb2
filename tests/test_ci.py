"""The CI template for forks runs what the README promises, and deploys only by hand through OIDC."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _pins(name: str) -> dict[str, str]:
    """``package==version`` lines of a requirements or constraints file, by canonical name."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        spec = line.split("#")[0].strip()
        if "==" in spec:
            package, version = spec.split("==")
            pins[canonicalize_name(package.split("[")[0])] = version.strip()
    return pins


def test_ci_runs_lint_tests_and_synth_and_keeps_cdk_out() -> None:
    test = WORKFLOW["jobs"]["test"]
    commands = _runs(test)
    for command in ("make lint", "make test", "make synth STAGE=prod", "make synth STAGE=sandbox"):
        assert command in commands
    (upload,) = [s for s in test["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == "cdk.out"
    assert "id-token" not in test.get("permissions", {})
    assert WORKFLOW["permissions"] == {"contents": "read"}


def test_deploy_is_manual_and_assumes_a_role_through_oidc() -> None:
    deploy = WORKFLOW["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'workflow_dispatch'"
    assert deploy["needs"] == "test"
    assert deploy["permissions"]["id-token"] == "write"
    (credentials,) = [s for s in deploy["steps"] if "configure-aws-credentials" in str(s.get("uses", ""))]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert "aws-access-key-id" not in credentials["with"]
    assert "make deploy" in _runs(deploy)


def test_every_action_is_pinned_to_a_commit_with_its_release_named() -> None:
    # a tag can be moved to other code; a commit cannot
    lines = (ROOT / ".github" / "workflows" / "ci.yml").read_text().splitlines()
    used = [
        line.split("uses:", 1)[1].strip() for line in lines if line.strip().startswith(("uses:", "- uses:"))
    ]
    assert len(used) == 8
    for action in used:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", action), action
    # and the checkouts leave no token in .git/config for a later step to find
    checkouts = [
        s
        for job in WORKFLOW["jobs"].values()
        for s in job["steps"]
        if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert [s["with"]["persist-credentials"] for s in checkouts] == [False, False]
    # Dependabot proposes new pins of the actions, and of nothing else
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert [u["package-ecosystem"] for u in dependabot["updates"]] == ["github-actions"]


def test_local_ci_entry_point_is_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text().split("\n\n")[1]


def test_pre_commit_pins_the_same_ruff_as_the_dev_requirements() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = [r for r in config["repos"] if r["repo"].endswith("ruff-pre-commit")]
    assert ruff["rev"] == f"v{_pins('requirements-dev.txt')['ruff']}"


def test_the_constraints_hold_every_pin_and_every_installed_package_at_its_version() -> None:
    locked = _pins("constraints.txt")
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        for package, version in _pins(requirements).items():
            assert locked.get(package) == version, (
                f"{requirements} pins {package}=={version}, constraints.txt has {locked.get(package)}: "
                "run make lock"
            )
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    # the lock describes the environment the tests run in, no package more or less
    assert {package: installed.get(package) for package in locked} == locked, "run make install"
    unlocked = set(installed) - set(locked) - {"pip", "setuptools", "wheel"}
    assert not unlocked, f"installed but not in constraints.txt (run make lock): {sorted(unlocked)}"


def test_the_environment_holds_aws_cdk_libs_own_cloud_assembly_schema_module() -> None:
    # aws-cdk-lib and aws-cdk.cloud-assembly-schema both install this file, and the one installed
    # last wins: after an upgrade of the second alone, jsii could no longer read CDK's annotations
    # (Unknown interface: aws-cdk-lib.cloud_assembly_schema.MetadataEntry, seen). A fresh
    # environment has aws-cdk-lib's, which make install builds whenever a pin changes.
    import aws_cdk.cloud_assembly_schema as schema

    assert 'jsii_type="aws-cdk-lib.cloud_assembly_schema.' in Path(schema.__file__).read_text(), (
        "aws_cdk/cloud_assembly_schema/__init__.py is not aws-cdk-lib's: rm -rf .venv && make install"
    )


def test_the_readme_names_every_lambda_and_glue_job_folder() -> None:
    """A newcomer reads the Folders table to find the code; a folder added without a row is lost."""
    readme = (ROOT / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `lambda/` |")]
    for folder in sorted(p for p in (ROOT / "lambda").iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert f"`{folder.name}/`" in row, (
            f"README's Folders table: add lambda/{folder.name}/ to the lambda/ row"
        )
    for job in sorted(p for p in (ROOT / "glue_jobs").iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert job.name in readme, f"the README does not name glue_jobs/{job.name}/"


def test_the_readme_explains_every_make_target() -> None:
    # `make help` lists the targets a `##` comment documents; the README's table explains each
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.MULTILINE)
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `make ")]
    unexplained = [t for t in targets if not any(f"`make {t}`" in row.split(" | ")[0] for row in table)]
    assert len(targets) > 10 and not unexplained, f"add a row to the README's table of targets: {unexplained}"
