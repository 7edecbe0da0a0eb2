#!/usr/bin/env python3
"""CDK entry point: picks the stage, loads the dataset files, composes the lake, adds compliance packs.

npx cdk synth -c stage=prod      # or: STAGE=prod make synth
npx cdk synth -c datasets_dir=path/to/datasets   # another folder of dataset files
npx cdk synth -c features=all -c quicksight_principal_arn=arn:aws:quicksight:...   # every component on
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from datalake.dataset import DATASETS_DIR, DatasetConfigError, load_datasets


def main() -> int:
    app = cdk.App()
    try:
        # Imported here: config/stages.py checks each stage as it defines it, so a stage edited
        # into an invalid one fails this import, and is reported as any other configuration error.
        from config import features_from_context, get_stage
        from stacks import build_lake, check_inputs
        from stacks.common import template_size_problems
        from stacks.compliance import add_compliance_packs

        stage = features_from_context(
            get_stage(str(app.node.try_get_context("stage") or "sandbox")),
            app.node.try_get_context("features"),
            app.node.try_get_context("quicksight_principal_arn"),
        )
        datasets = load_datasets(str(app.node.try_get_context("datasets_dir") or DATASETS_DIR))
        check_inputs(stage, datasets)
    except (DatasetConfigError, ValueError) as exc:
        # One clear message, no Python or jsii stack trace: the file, the field and the fix.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    build_lake(app, stage, datasets)
    add_compliance_packs(app)
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        # A validation of the app (a stack over CloudFormation's quota, a compliance finding)
        # reports what to fix; the JavaScript stack trace under it would only hide that.
        if not str(exc).startswith("ValidationFailedWithErrors"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if problems := template_size_problems(assembly, len(datasets)):
        print(
            "error: a template CloudFormation would refuse:\n  - " + "\n  - ".join(problems), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
