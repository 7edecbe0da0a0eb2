"""Synthesize the lake once per configuration for the whole test session.

Synthesis is the slow part of CDK tests (jsii, five compliance packs), so every module asks this
cache instead of building its own app: each distinct stage/feature set is synthesized once.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import assertions
from cfn_resolve import ACCOUNT, REGION, Resolver
from moto.events.models import EventPattern

from config import StageConfig, get_stage
from datalake.assembly import joined_json, nested_template_files, with_nested
from datalake.dataset import Dataset, load_dataset, load_datasets
from stacks import Lake, build_lake, check_inputs
from stacks.compliance import add_compliance_packs

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
#: A second dataset beside the shipped ones, as a fork adds one: the longest name the stages'
#: prefixes allow, with every column type, the Kinesis source and the options orders.json leaves out.
SECOND_DATASET = str(
    Path(__file__).resolve().parent / "datasets" / "web_storefront_page_views_by_session_and_pages.json"
)


@dataclass
class Synth:
    app: cdk.App
    lake: Lake
    assembly: cdk.cx_api.CloudAssembly
    outdir: Path
    _templates: dict[str, assertions.Template] = field(default_factory=dict)

    def template(self, stack: cdk.Stack) -> assertions.Template:
        """An assertions.Template from the synthesized file (no second synth)."""
        name = stack.stack_name
        if name not in self._templates:
            self._templates[name] = assertions.Template.from_json(self.template_json(stack))
        return self._templates[name]

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        """``stack``'s template with the resources and outputs of its nested stacks (a dataset's
        each: ``stacks.common.dataset_stack``) merged in, as if it held them: their logical ids
        are those they would have in it. :meth:`own_template_json` reads its file alone."""
        return with_nested(self.outdir, self.own_template_json(stack), self._nested_files)

    @functools.cached_property
    def _nested_files(self) -> dict[str, str]:
        return nested_template_files(self.outdir)

    def own_template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        """The template file of ``stack`` (or of a nested stack) as synthesized."""
        return json.loads((self.outdir / stack.template_file).read_text())

    def deploys_after(self, stack: cdk.Stack) -> dict[str, set[str]]:
        """Each resource of ``stack`` and of its nested stacks (by logical id, as
        :meth:`template_json` has them): the resources CloudFormation deploys before it. A resource
        waits for what its ``DependsOn`` names (a nested stack: with all that stack holds), and
        for what its own nested stack waits for."""
        depends: dict[str, set[str]] = {}
        container: dict[str, str] = {}  # a nested resource's nested stack's logical id
        holds: dict[str, set[str]] = {}  # what a nested stack's resources hold, at any depth

        def walk(of: cdk.Stack, within: str | None) -> set[str]:
            held = set()
            for logical, resource in self.own_template_json(of)["Resources"].items():
                depends[logical] = set(resource.get("DependsOn", []))
                held.add(logical)
                if within is not None:
                    container[logical] = within
            for child in of.node.find_all():
                if isinstance(child, cdk.NestedStack) and child.nested_stack_parent is of:
                    logical = of.resolve(child.nested_stack_resource.logical_id)  # type: ignore[union-attr]
                    holds[logical] = walk(child, logical)
                    held |= holds[logical]
            return held

        def after(logical: str) -> set[str]:
            waits = {w for d in depends[logical] for w in {d, *holds.get(d, ())}}
            return waits | after(container[logical]) if logical in container else waits

        walk(stack, None)
        return {logical: after(logical) for logical in depends}

    def all_templates(self) -> dict[str, dict[str, Any]]:
        return {s.stack_name: self.template_json(s) for s in self.lake.stacks}

    def template_files(self) -> dict[str, dict[str, Any]]:
        """Every template file of the lake, nested stacks' too, by its file name."""
        return {
            s.template_file: self.own_template_json(s)
            for top in self.lake.stacks
            for s in top.node.find_all()
            if isinstance(s, cdk.Stack)
        }

    def resolved(self, stack: cdk.Stack, node: Any) -> Any:
        """``node`` of ``stack``'s template as deployed: its tokens resolved by ``tests/cfn_resolve.py``."""
        return Resolver(self.all_templates()).resolve(stack.stack_name, node)

    def dashboard_body(self) -> dict[str, Any]:
        """The body (an ``Fn::Join``) of the lake's one CloudWatch dashboard."""
        (dashboard,) = (
            self.template(self.lake.observability).find_resources("AWS::CloudWatch::Dashboard").values()
        )
        body: dict[str, Any] = dashboard["Properties"]["DashboardBody"]
        return body

    def dashboard_row(self, heading: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The dashboard's text widget whose markdown holds ``heading``, and the widgets of the row
        right under it."""
        widgets = joined_json(self.dashboard_body())["widgets"]
        (text,) = [w for w in widgets if heading in w["properties"].get("markdown", "")]
        return text, [w for w in widgets if w["y"] == text["y"] + text["height"]]

    def event_pattern(self, stack: cdk.Stack, pattern: dict[str, Any]) -> EventPattern:
        """A rule's event pattern as deployed, which moto's EventBridge matcher tests events against."""
        return EventPattern(None, self.resolved(stack, pattern))

    def cdk_findings(self) -> list[str]:
        """The warnings and errors CDK attached to any stack of the app (``id: message``)."""
        return [
            f"{entry.id}: {entry.entry.data}"
            for stack in self.lake.stacks
            for entry in self.assembly.get_stack_artifact(stack.artifact_id).messages
            if entry.level.name in ("WARNING", "ERROR")
        ]


#: Every switch of the sandbox flipped from its default, in one synth (tests of each switch share it).
SWITCHED: dict[str, Any] = {"lake_formation": False, "macie_reuse_session": True, "athena_spark": True}
#: Macie and CloudTrail off, QuickSight on (with Lake Formation on, so its grants are synthesized).
WITHOUT_AUDIT: dict[str, Any] = {
    "macie": False,
    "cloudtrail": False,
    "quicksight_principal_arn": "arn:aws:quicksight:eu-west-1:123456789012:user/default/analyst",
}

#: A fork with two datasets and every component on (prod adds Redshift): the second dataset's
#: resources in every stack, beside those of orders.
TWO_DATASETS: dict[str, Any] = {
    "extra_datasets": (SECOND_DATASET,),
    "athena_spark": True,
    "quicksight_principal_arn": WITHOUT_AUDIT["quicksight_principal_arn"],
}


@functools.cache
def synthesize(stage_name: str = "sandbox", extra_datasets: tuple[str, ...] = (), **features: Any) -> Synth:
    """Build and synthesize the whole app with every compliance pack; raises on any open finding.

    ``extra_datasets``: dataset files synthesized beside those of ``config/datasets/``.
    """
    stage = get_stage(stage_name)
    if features:
        stage = stage.with_features(**features)
    return build(stage, load_datasets() + tuple(load_dataset(path) for path in extra_datasets))


def app_context() -> dict[str, Any]:
    """The context ``cdk synth`` gives the app: cdk.json's (the feature flags, which the CLI passes
    and a test must pass itself), with no asset bundling (code folders are used as they are)."""
    context = dict(json.loads(CDK_JSON.read_text())["context"])
    context["aws:cdk:bundling-stacks"] = []
    return context


def build(stage: StageConfig, datasets: tuple[Dataset, ...]) -> Synth:
    """Check, build and synthesize the app as ``app.py`` does, uncached (``synthesize`` caches)."""
    check_inputs(stage, datasets)
    outdir = Path(tempfile.mkdtemp(prefix=f"cdk-{stage.name}-"))
    app = cdk.App(outdir=str(outdir), context=app_context())
    lake = build_lake(app, stage, datasets)
    add_compliance_packs(app)
    assembly = app.synth()
    return Synth(app=app, lake=lake, assembly=assembly, outdir=outdir)


def actions(statement: dict[str, Any]) -> list[str]:
    """A policy statement's actions, one or many."""
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def policy_statements(template: assertions.Template, id_prefix: str) -> list[dict[str, Any]]:
    """The statements of the one managed policy whose logical id starts with ``id_prefix``."""
    policies = {
        k: v for k, v in template.find_resources("AWS::IAM::ManagedPolicy").items() if k.startswith(id_prefix)
    }
    assert len(policies) == 1, list(policies)
    statements: list[dict[str, Any]] = next(iter(policies.values()))["Properties"]["PolicyDocument"][
        "Statement"
    ]
    return statements


def output_of(value: Any) -> str:
    """The producing stack's output name a weak cross-stack reference reads."""
    name: str = value["Fn::GetStackOutput"]["OutputName"]
    return name


def lf_grants(catalog: assertions.Template) -> list[dict[str, Any]]:
    """The properties of every Lake Formation grant of the catalog stack."""
    resources = catalog.find_resources("AWS::LakeFormation::PrincipalPermissions").values()
    return [g["Properties"] for g in resources]


def grant_principal(grant: dict[str, Any]) -> str:
    """Who a grant is to: the governance stack's output naming the principal or, for a role the
    catalog addresses by its name (a dataset's pipeline roles), ``role/<name>``."""
    principal = grant["Principal"]["DataLakePrincipalIdentifier"]
    if "Fn::Join" not in principal:
        return output_of(principal)
    arn = principal["Fn::Join"][1]  # ["arn:", partition, ":iam::", account, ":role/<name>"]
    assert arn[-1].startswith(":role/"), arn
    return str(arn[-1][1:])


def tag_expression(grant: dict[str, Any]) -> dict[str, list[str]]:
    """A tag-policy grant's expression with tag keys by name (they are the governance stack's tags)."""
    names = {"ZoneTag": "zone", "ClassificationTag": "classification"}
    out = {}
    for e in grant["Resource"]["LFTagPolicy"]["Expression"]:
        output = output_of(e["TagKey"])
        (name,) = [n for part, n in names.items() if part in output]
        out[name] = e["TagValues"]
    return out


def api_call_event(service: str, name: str, parameters: dict[str, Any], **detail: Any) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event as EventBridge delivers it: ``service``'s call
    ``name`` (``eventSource`` ``<service>.amazonaws.com``, EventBridge ``source`` ``aws.<service>``,
    as EventBridge's event reference gives each service's), by an assumed role unless ``detail``
    gives another ``userIdentity``."""
    return {
        "version": "0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": f"aws.{service}",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [],
        "detail": {
            "eventSource": f"{service}.amazonaws.com",
            "eventName": name,
            "eventTime": "2026-12-06T22:00:00Z",
            "userIdentity": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/admin/kim"},
            "requestParameters": parameters,
            **detail,
        },
    }


def assumed_role(role: str) -> dict[str, Any]:
    """A role session's identity as CloudTrail records it."""
    return {
        "type": "AssumedRole",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}},
    }
