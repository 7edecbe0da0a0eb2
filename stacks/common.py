"""Small helpers the stacks share: stage-driven removal and log retention, the stack and dashboard quotas."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import jsii
from aws_cdk import (
    CfnOutput,
    CfnParameter,
    CfnResource,
    NestedStack,
    PermissionsBoundary,
    RemovalPolicy,
    Stack,
    cx_api,
)
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from constructs import IConstruct, IValidation

from config import StageConfig
from datalake.assembly import joined_json, stack_template_files
from datalake.dataset import Dataset


def removal_policy(stage: StageConfig) -> RemovalPolicy:
    """Sandbox stages destroy everything with the stack; other stages retain data and keys."""
    return RemovalPolicy.DESTROY if stage.destroy_on_removal else RemovalPolicy.RETAIN


def permissions_boundary(stage: StageConfig) -> PermissionsBoundary | None:
    """The stage's boundary for every role of a stack (``StageConfig`` checks its form); CDK's
    aspect sets it on each ``AWS::IAM::Role`` as it is synthesized, function roles of CDK's own
    custom resources included."""
    boundary = stage.permissions_boundary
    if boundary is None:
        return None
    if boundary.startswith("arn:"):
        return PermissionsBoundary.from_arn(boundary)
    return PermissionsBoundary.from_name(boundary)


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(stage: StageConfig) -> logs.RetentionDays:
    """The stage's retention as the CDK enum (``StageConfig`` validates the number of days)."""
    return _RETENTION[stage.log_retention_days]


def dataset_stack(stack: Stack, dataset: Dataset, holds: str) -> NestedStack:
    """A nested stack of ``stack`` for ``dataset``'s resources (``holds`` says which), its
    construct id the dataset's: the resources' logical ids in it are those they would have in
    ``stack``, and :func:`~cdk_constructs.alerts.alarm_name` leaves it out of alarm names.

    ``stack`` then holds one resource a dataset instead of every one of them: a stack deploys at
    most 500 resources (:data:`MAX_STACK_RESOURCES`), and a nested stack as many again."""
    return NestedStack(
        stack, dataset.construct_id, description=f"{stack.stack_name}: {holds} of {dataset.name}"
    )


def database_name(stage: StageConfig, zone: str) -> str:
    """Glue database of a zone: ``<prefix>_<zone>`` with ``-`` as ``_`` (Athena-friendly)."""
    return f"{stage.prefix.replace('-', '_')}_{zone}"


#: The most resources CloudFormation deploys in one stack (its quotas page).
MAX_STACK_RESOURCES = 500
#: The largest template CloudFormation deploys, from S3 as CDK hands it over (its quotas page:
#: "Template body size in an Amazon S3 object", 1 MB; CDK's own warning counts 1,000,000 bytes).
MAX_TEMPLATE_BYTES = 1_000_000
#: What a stack's problem says to do when it outgrows a quota as datasets are added.
_OTHER_STAGE = "give some of the dataset files to another stage (its own prefix, or its own datasets_dir)"
_WAY_OUT = f"{_OTHER_STAGE}, or split this stack"


def template_size_problems(assembly: cx_api.CloudAssembly, datasets: int) -> list[str]:
    """A line for each stack of ``assembly``, nested stacks too, whose template, as written, is larger than
    CloudFormation deploys: known only once it is synthesized, after every validation, so the app
    checks it then (``app.py``); CDK only warns."""
    problems = []
    templates = {}
    for name, (path, nested) in stack_template_files(Path(assembly.directory)).items():
        templates[name] = path
        # each nested stack (a dataset's: dataset_stack) by its template file's name
        templates.update({inner.name: inner for inner in nested})
    for name, path in templates.items():
        size = path.stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            problems.append(
                f"{name}'s template has {size:,} bytes, more than the "
                f"{MAX_TEMPLATE_BYTES:,} CloudFormation deploys; most of it grows with the stage's "
                f"{datasets} datasets: {_WAY_OUT}"
            )
    return problems


#: The most outputs and parameters a template declares (CloudFormation's quotas page).
MAX_OUTPUTS = 200
MAX_PARAMETERS = 200
#: The most resources one operation on a stack creates, updates or deletes across its nested
#: stacks (the quotas page's "Nested stacks").
MAX_NESTED_OPERATION = 2_500


#: The most widgets a CloudWatch dashboard holds (its dashboard body structure: 0 to 500).
MAX_DASHBOARD_WIDGETS = 500


@jsii.implements(IValidation)
class DashboardQuota:
    """Fails synthesis, naming the way out, when ``dashboard`` holds more widgets than CloudWatch
    takes: the lake's one dashboard has a section a dataset (``datasets`` of them here), and
    CloudFormation would refuse it only at deploy time."""

    def __init__(self, dashboard: cloudwatch.Dashboard, datasets: int) -> None:
        self._dashboard = dashboard
        self._cfn: cloudwatch.CfnDashboard = dashboard.node.default_child  # type: ignore[assignment]
        self._datasets = datasets

    def widgets(self) -> int:
        """The widgets of the dashboard's body as synthesized (its tokens, names and ARNs, sit
        inside JSON strings)."""
        return len(joined_json(Stack.of(self._dashboard).resolve(self._cfn.dashboard_body))["widgets"])

    def validate(self) -> list[str]:
        count = self.widgets()
        if count <= MAX_DASHBOARD_WIDGETS:
            return []
        name = self._cfn.dashboard_name
        return [
            f"the dashboard {name} holds {count} widgets, more than the {MAX_DASHBOARD_WIDGETS} "
            f"CloudWatch takes in one; most grow with the stage's {self._datasets} datasets: {_OTHER_STAGE}"
        ]


def _ref(construct: IConstruct) -> str:
    """The construct's identity in jsii's kernel: a construct made on the JavaScript side gets a
    new Python object each time the tree is read, so ``id()`` of it would not do."""
    return str(construct.__jsii_ref__.ref)  # type: ignore[attr-defined]


@jsii.implements(IValidation)
class StackQuotas:
    """Fails synthesis, naming the way out, when ``stack`` or one of its nested stacks declares
    more resources, outputs or parameters than CloudFormation deploys in one template, or the
    stack with its nested stacks more resources than one operation may touch: the catalog,
    ingestion and processing stacks grow with every dataset (``datasets`` of them here), and
    CloudFormation would refuse the template only at deploy time."""

    def __init__(self, stack: Stack, datasets: int) -> None:
        self._stack = stack
        self._datasets = datasets
        self._tally: dict[str, Counter[type]] | None = None

    def _count(self, kind: type, stack: Stack) -> int:
        if self._tally is None:
            self._tally = self._tallied()
        return self._tally[_ref(stack)][kind]

    def _tallied(self) -> dict[str, Counter[type]]:
        """The resources, outputs and parameters of each template, counted in one walk of the
        tree once it is complete (synthesis validates it then): a construct is its innermost
        stack's. ``Stack.of`` for each construct, a call into jsii, made this quadratic in the
        datasets (44 s of a 74-second synth at 30 datasets)."""
        within = {_ref(s): {_ref(c) for c in s.node.find_all()} for s in self.stacks()}
        innermost = sorted(within, key=lambda s: len(within[s]))
        tally: dict[str, Counter[type]] = {s: Counter() for s in within}
        for construct in self._stack.node.find_all():
            kind = next((k for k in (CfnResource, CfnOutput, CfnParameter) if isinstance(construct, k)), None)
            if kind is not None:
                tally[next(s for s in innermost if _ref(construct) in within[s])][kind] += 1
        return tally

    def stacks(self) -> list[Stack]:
        """The stack and its nested stacks, each with a template of its own."""
        return [c for c in self._stack.node.find_all() if isinstance(c, Stack)]

    def resources(self, stack: Stack | None = None) -> int:
        """Resources of ``stack`` (default: this one) as its template will hold them (CDK's
        metadata resource too, and a nested stack's resource in its parent)."""
        return self._count(CfnResource, stack or self._stack)

    def outputs(self, stack: Stack | None = None) -> int:
        return self._count(CfnOutput, stack or self._stack)

    def parameters(self, stack: Stack | None = None) -> int:
        return self._count(CfnParameter, stack or self._stack)

    def validate(self) -> list[str]:
        problems = []
        for stack in self.stacks():
            name = stack.node.path if stack.nested else stack.stack_name
            for what, count, most in (
                ("resources", self.resources(stack), MAX_STACK_RESOURCES),
                ("outputs", self.outputs(stack), MAX_OUTPUTS),
                ("parameters", self.parameters(stack), MAX_PARAMETERS),
            ):
                if count > most:
                    problems.append(
                        f"{name} holds {count} {what}, more than the {most} CloudFormation deploys in "
                        f"one stack; most grow with the stage's {self._datasets} datasets: {_WAY_OUT}"
                    )
        total = sum(self.resources(stack) for stack in self.stacks())
        if total > MAX_NESTED_OPERATION:
            problems.append(
                f"{self._stack.stack_name} holds {total:,} resources with its nested stacks, more than the "
                f"{MAX_NESTED_OPERATION:,} one CloudFormation operation creates; most grow with the stage's "
                f"{self._datasets} datasets: {_WAY_OUT}"
            )
        return problems
