"""Every synthesized template passes cfn-lint, stays inside CloudFormation quotas, and CDK's own
validation reports nothing; a second dataset file fans out to every stack."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from cfn_resolve import ACCOUNT, REGION, Resolver
from cfnlint.api import ManualArgs, lint_by_config
from lake_app import SECOND_DATASET, SWITCHED, TWO_DATASETS, WITHOUT_AUDIT, Synth, joined_json, synthesize

from config import get_stage
from config.stages import MAX_TRUST_POLICY
from datalake.dataset import load_dataset, longest_dataset_name
from stacks.common import (
    MAX_DASHBOARD_WIDGETS,
    MAX_NESTED_OPERATION,
    MAX_OUTPUTS,
    MAX_PARAMETERS,
    MAX_STACK_RESOURCES,
    MAX_TEMPLATE_BYTES,
    DashboardQuota,
    StackQuotas,
)

# Quotas: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html
MAX_EVENT_PATTERN = 2048
# cfn-lint checks that CDK itself triggers; each is a warning about generated code we do not write.
CFN_LINT_IGNORE: list[str] = [
    # W3005 "obsolete DependsOn": CDK's Custom::S3AutoDeleteObjects provider (sandbox buckets only)
    # both references its role and lists it in DependsOn. Harmless, and not ours to change.
    "W3005",
]
REGIONS = ["eu-west-1", "us-east-1", "ap-northeast-2"]
RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
SECURITY = RUNBOOK.with_name("security.md")


#: Both stages, every switch flipped (the variants other modules synthesize anyway), and a fork
#: with a second dataset and every component on.
VARIANTS = {
    "sandbox": ("sandbox", {}),
    "prod": ("prod", {}),
    "switched": ("sandbox", SWITCHED),
    "without-audit-with-quicksight": ("sandbox", WITHOUT_AUDIT),
    "prod-two-datasets-every-component": ("prod", TWO_DATASETS),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def synth(request: pytest.FixtureRequest) -> Synth:
    stage, features = VARIANTS[request.param]
    return synthesize(stage, **features)


def test_cfn_lint_reports_nothing(synth: Synth) -> None:
    # every template file, each dataset's nested stacks' too (they hold its job, crawler, state
    # machine, tables, grants, delivery stream and alarms)
    templates = [str(synth.outdir / name) for name in synth.template_files()]
    assert len(templates) > len(synth.lake.stacks)
    # one run over every template: cfn-lint loads its rules once per run
    config = ManualArgs(templates=templates, regions=REGIONS, ignore_checks=CFN_LINT_IGNORE)
    assert [str(m) for m in lint_by_config(config)] == []


def test_templates_respect_cloudformation_quotas(synth: Synth) -> None:
    # every template file, each dataset's nested stacks' too
    for name, template in synth.template_files().items():
        size = len(json.dumps(template, separators=(",", ":")))
        assert len(template.get("Resources", {})) <= MAX_STACK_RESOURCES, name
        assert len(template.get("Outputs", {})) <= MAX_OUTPUTS, name
        assert len(template.get("Parameters", {})) <= MAX_PARAMETERS, name
        assert size < MAX_TEMPLATE_BYTES, name


def test_each_stack_counts_its_resources_outputs_and_parameters_as_its_template_holds_them(
    synth: Synth,
) -> None:
    # what the synth-time quota check counts is what CloudFormation will count, in every
    # template (a nested stack's too; the cross-stack outputs CDK adds included)
    checked = 0
    for top in synth.lake.stacks:
        quotas = StackQuotas(top, datasets=1)
        for stack in quotas.stacks():
            template = synth.own_template_json(stack)
            counts = (quotas.resources(stack), quotas.outputs(stack), quotas.parameters(stack))
            expected = tuple(len(template.get(k, {})) for k in ("Resources", "Outputs", "Parameters"))
            assert counts == expected, stack.node.path
            checked += 1
    assert checked > len(synth.lake.stacks)


def _failed_synth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], build: Callable[..., None]
) -> str:
    """What ``app.py`` prints when ``build`` stands in for ``stacks.build_lake``; it must fail."""
    import app as cdk_app
    import stacks

    monkeypatch.setattr(stacks, "build_lake", build)
    assert cdk_app.main() == 1
    return capsys.readouterr().err


def test_a_stack_over_cloudformations_output_or_nested_operation_quota_fails_synth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake whose ingestion stack declares one output too many, and whose processing
    # stack's nested stacks, each within the quota, add up to more than one operation touches
    def crowded_lake(app: cdk.App, stage: Any, datasets: Any) -> None:
        ingestion = cdk.Stack(app, f"{stage.prefix}-ingestion")
        for i in range(MAX_OUTPUTS + 1):
            cdk.CfnOutput(ingestion, f"Output{i}", value="x")
        processing = cdk.Stack(app, f"{stage.prefix}-processing")
        for n in range(MAX_NESTED_OPERATION // MAX_STACK_RESOURCES + 1):
            nested = cdk.NestedStack(processing, f"Dataset{n}")
            for i in range(MAX_STACK_RESOURCES - 1):
                cdk.CfnWaitConditionHandle(nested, f"Handle{i}")
        for stack in (ingestion, processing):
            stack.node.add_validation(StackQuotas(stack, datasets=30))

    # WHEN the app synthesizes THEN it stops naming each stack, its count, the quota and the fix
    error = _failed_synth(monkeypatch, capsys, crowded_lake)
    assert "lake-sbx-ingestion holds 201 outputs, more than the 200 CloudFormation deploys" in error
    assert (
        "lake-sbx-processing holds 3,000 resources with its nested stacks, more than the 2,500 one "
        "CloudFormation operation creates" in error
    )
    assert "nested" not in error.split("with its nested stacks")[0]  # each nested stack within 500
    assert error.count("give some of the dataset files to another stage") == 2


def test_a_stack_over_cloudformations_resource_quota_fails_synth_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake whose catalog stack outgrew the quota (as some 18 datasets would)
    def crowded_lake(app: cdk.App, stage: Any, datasets: Any) -> None:
        stack = cdk.Stack(app, f"{stage.prefix}-catalog")
        for i in range(MAX_STACK_RESOURCES + 1):
            cdk.CfnWaitConditionHandle(stack, f"Handle{i}")
        stack.node.add_validation(StackQuotas(stack, datasets=19))

    # WHEN the app synthesizes THEN it stops with one line naming the stack, the count and the fix
    error = _failed_synth(monkeypatch, capsys, crowded_lake)
    assert "Traceback" not in error and "at " not in error.splitlines()[-1]
    assert "lake-sbx-catalog holds 501 resources, more than the 500 CloudFormation deploys" in error
    assert "give some of the dataset files to another stage" in error


def test_a_template_over_cloudformations_size_quota_fails_synth_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake whose processing stack's template outgrew 1 MB (as some 20 datasets would),
    # beside one whose template is a little within it
    def heavy_lake(app: cdk.App, stage: Any, datasets: Any) -> None:
        for name, padding in (("processing", MAX_TEMPLATE_BYTES), ("catalog", MAX_TEMPLATE_BYTES - 5_000)):
            stack = cdk.Stack(app, f"{stage.prefix}-{name}")
            cdk.CfnWaitConditionHandle(stack, "Handle").add_metadata("padding", "x" * padding)

    # WHEN the app synthesizes THEN it stops with one line naming the stack, its size and the fix,
    # and none for the stack within the quota
    error = _failed_synth(monkeypatch, capsys, heavy_lake)
    assert error.startswith("error: a template CloudFormation would refuse:\n  - lake-sbx-processing's ")
    size = re.search(r"processing's template has ([\d,]+) bytes, more than the 1,000,000 ", error)
    assert (
        size is not None and MAX_TEMPLATE_BYTES < int(size[1].replace(",", "")) < MAX_TEMPLATE_BYTES + 5_000
    )
    assert "give some of the dataset files to another stage" in error
    assert "catalog" not in error and len(error.splitlines()) == 2


def test_a_nested_template_over_cloudformations_size_quota_fails_synth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake whose processing stack is small but one dataset's nested stack is over 1 MB
    def heavy_dataset(app: cdk.App, stage: Any, datasets: Any) -> None:
        nested = cdk.NestedStack(cdk.Stack(app, f"{stage.prefix}-processing"), "Orders")
        cdk.CfnWaitConditionHandle(nested, "Handle").add_metadata("padding", "x" * MAX_TEMPLATE_BYTES)

    # WHEN the app synthesizes THEN it stops naming the nested stack's template alone
    error = _failed_synth(monkeypatch, capsys, heavy_dataset)
    assert re.search(
        r"\n  - lakesbxprocessingOrders\w+\.nested\.template\.json's template has [\d,]+ bytes", error
    )
    assert len(error.splitlines()) == 2


def test_a_dashboard_over_cloudwatchs_widget_quota_fails_synth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake whose dashboard has one widget more than CloudWatch takes (as some 61
    # datasets' sections would), one of them naming a resource of another stack
    def crowded_dashboard(app: cdk.App, stage: Any, datasets: Any) -> None:
        topic = cdk.aws_sns.Topic(cdk.Stack(app, f"{stage.prefix}-foundation"), "Topic")
        stack = cdk.Stack(app, f"{stage.prefix}-observability")
        dashboard = cdk.aws_cloudwatch.Dashboard(
            stack, "Dashboard", dashboard_name=f"{stage.prefix}-pipeline"
        )
        dashboard.add_widgets(cdk.aws_cloudwatch.TextWidget(markdown=f"## `{topic.topic_name}`"))
        for i in range(MAX_DASHBOARD_WIDGETS):
            dashboard.add_widgets(cdk.aws_cloudwatch.TextWidget(markdown=f"## Dataset {i}", width=24))
        stack.node.add_validation(DashboardQuota(dashboard, 61))

    # WHEN the app synthesizes THEN it stops naming the dashboard, its count, the quota and the fix
    error = _failed_synth(monkeypatch, capsys, crowded_dashboard)
    assert (
        "the dashboard lake-sbx-pipeline holds 501 widgets, more than the 500 CloudWatch takes in one; "
        "most grow with the stage's 61 datasets: give some of the dataset files to another stage"
    ) in error


def test_the_dashboard_quota_counts_the_lakes_widgets(synth: Synth) -> None:
    # the count the quota checks is the synthesized dashboard's, within the quota
    widgets = joined_json(synth.dashboard_body())["widgets"]
    quota = DashboardQuota(synth.lake.observability.dashboard, len(synth.lake.ingestion.streams))
    assert quota.widgets() == len(widgets) <= MAX_DASHBOARD_WIDGETS
    assert quota.validate() == []


def test_a_stale_nested_template_of_an_earlier_synth_does_not_fail_synth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN an output directory holding, from an earlier synth, a nested template over 1 MB
    # (a removed dataset's, another stage's) that no stack of this synth deploys
    import app as cdk_app
    import stacks

    (tmp_path / "lakesbxprocessingRemoved0123ABCD.nested.template.json").write_text(
        json.dumps({"Resources": {}, "Metadata": {"padding": "x" * MAX_TEMPLATE_BYTES}})
    )

    def lake(app: cdk.App, stage: Any, datasets: Any) -> None:
        nested = cdk.NestedStack(cdk.Stack(app, f"{stage.prefix}-processing"), "Orders")
        cdk.CfnWaitConditionHandle(nested, "Handle")

    app_class = cdk.App
    monkeypatch.setattr(cdk, "App", lambda: app_class(outdir=str(tmp_path)))
    monkeypatch.setattr(stacks, "build_lake", lake)
    # WHEN the app synthesizes into it THEN only this synth's templates are checked
    assert cdk_app.main() == 0
    assert len(list(tmp_path.glob("*.nested.template.json"))) == 2


def test_event_patterns_fit_eventbridges_quota(synth: Synth) -> None:
    # EventBridge's quotas page: an event pattern holds at most 2,048 characters by default;
    # measured as deployed (names and ARNs filled in, in the longest region name of REGIONS)
    patterns = {
        f"{stack.stack_name}/{logical}": synth.resolved(stack, resource["Properties"]["EventPattern"])
        for stack in synth.lake.stacks
        for logical, resource in synth.template_json(stack)["Resources"].items()
        if resource["Type"] == "AWS::Events::Rule" and "EventPattern" in resource["Properties"]
    }
    assert patterns
    longest_region = max(len(r) for r in REGIONS)
    for name, pattern in patterns.items():
        text = json.dumps(pattern, separators=(",", ":"))
        assert len(text) + text.count(REGION) * (longest_region - len(REGION)) <= MAX_EVENT_PATTERN, name


#: Services whose guides document a confused-deputy guard in the trust policy of a role they
#: assume, and the condition key our roles require of each (``sts:ExternalId`` is Firehose's own).
GUARDED_SERVICES = {
    "athena.amazonaws.com": "aws:SourceAccount",
    "firehose.amazonaws.com": "sts:ExternalId",
    "quicksight.amazonaws.com": "aws:SourceAccount",
    "scheduler.amazonaws.com": "aws:SourceAccount",
    "states.amazonaws.com": "aws:SourceAccount",
    "vpc-flow-logs.amazonaws.com": "aws:SourceAccount",
}
#: Services that assume our roles without such a guard. Lambda's execution roles, Glue's job and
#: crawler roles, Lake Formation's registration roles and CloudTrail's logs role: their guides give
#: no source keys for the trust policy, and a key the service does not send denies it. Redshift's
#: Spectrum role: its guide's guard (``sts:ExternalId`` naming the database users' ARNs) needs the
#: Serverless workgroup's id, which the consumption stack creates after the governance stack's role.
UNGUARDED_SERVICES = {
    "cloudtrail.amazonaws.com",
    "glue.amazonaws.com",
    "lakeformation.amazonaws.com",
    "lambda.amazonaws.com",
    "redshift.amazonaws.com",
    "redshift-serverless.amazonaws.com",
}


def test_service_roles_are_guarded_where_the_service_documents_how(synth: Synth) -> None:
    # a role for a service on neither list fails here until someone reads that service's guide
    seen = set()
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                services = statement["Principal"].get("Service", [])
                for service in [services] if isinstance(services, str) else services:
                    seen.add(service)
                    where = f"{stack.stack_name}/{logical} ({service})"
                    assert service in GUARDED_SERVICES or service in UNGUARDED_SERVICES, where
                    if service in GUARDED_SERVICES:
                        assert GUARDED_SERVICES[service] in statement["Condition"]["StringEquals"], where
    assert {"states.amazonaws.com", "scheduler.amazonaws.com", "firehose.amazonaws.com"} <= seen


#: Where resource policies keep their statements.
POLICY_DOCUMENTS = {
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::KMS::Key": "KeyPolicy",
}


#: Each service's quota on a resource policy: (statements, bytes). SQS's policy quotas page;
#: S3's bucket policy (20 KB), SNS's topic policy (30 KB), KMS's key policy (32 KB) quotas.
POLICY_QUOTAS = {
    "AWS::SQS::QueuePolicy": (20, 8192),
    "AWS::S3::BucketPolicy": (None, 20 * 1024),
    "AWS::SNS::TopicPolicy": (None, 30 * 1024),
    "AWS::KMS::Key": (None, 32 * 1024),
}


def test_resource_policies_fit_their_services_quotas(synth: Synth) -> None:
    # measured as deployed (names and ARNs filled in), in the longest region name of REGIONS
    resolver = Resolver(synth.all_templates())
    longest_region = max(len(r) for r in REGIONS)
    measured = 0
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] not in POLICY_QUOTAS:
                continue
            document = resource["Properties"][POLICY_DOCUMENTS[resource["Type"]]]
            text = json.dumps(resolver.resolve(stack.stack_name, document), separators=(",", ":"))
            size = len(text) + text.count(REGION) * (longest_region - len(REGION))
            statements, max_bytes = POLICY_QUOTAS[resource["Type"]]
            assert statements is None or len(document["Statement"]) <= statements, (stack.stack_name, logical)
            assert size <= max_bytes, (stack.stack_name, logical, size)
            measured += 1
    assert measured >= 10


# IAM's quotas page: characters without white space, and managed policies a role may have.
MAX_MANAGED_POLICY = 6144
MAX_INLINE_POLICIES_PER_ROLE = 10240
MAX_MANAGED_POLICIES_PER_ROLE = 10


def test_iam_policies_fit_iams_quotas(synth: Synth) -> None:
    # measured as deployed, in the longest region name of REGIONS: a policy over its quota fails
    # the deployment, and policies grow with names and datasets
    resolver = Resolver(synth.all_templates())
    longest_region = max(len(r) for r in REGIONS)

    def size(stack: cdk.Stack, document: Any) -> int:
        text = re.sub(r"\s", "", json.dumps(resolver.resolve(stack.stack_name, document)))
        return len(text) + text.count(REGION) * (longest_region - len(REGION))

    inline: dict[str, int] = {}
    managed_per_role: dict[str, int] = {}
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            props = resource["Properties"]
            where = f"{stack.stack_name}/{logical}"
            if resource["Type"] == "AWS::IAM::Role":
                assert size(stack, props["AssumeRolePolicyDocument"]) <= MAX_TRUST_POLICY, where
                managed_per_role[where] = managed_per_role.get(where, 0) + len(
                    props.get("ManagedPolicyArns", [])
                )
            if resource["Type"] == "AWS::IAM::ManagedPolicy":
                assert size(stack, props["PolicyDocument"]) <= MAX_MANAGED_POLICY, where
                for role in props.get("Roles", []):
                    key = json.dumps(resolver.resolve(stack.stack_name, role))
                    managed_per_role[key] = managed_per_role.get(key, 0) + 1
            if resource["Type"] == "AWS::IAM::Policy":
                for role in props.get("Roles", []):
                    key = json.dumps(resolver.resolve(stack.stack_name, role))
                    inline[key] = inline.get(key, 0) + size(stack, props["PolicyDocument"])
    assert all(total <= MAX_INLINE_POLICIES_PER_ROLE for total in inline.values()), inline
    assert all(count <= MAX_MANAGED_POLICIES_PER_ROLE for count in managed_per_role.values()), (
        managed_per_role
    )


#: Lambda's quotas page: a function's environment variables, 4 KB in all.
MAX_FUNCTION_ENVIRONMENT = 4096


def test_function_environments_fit_lambdas_quota(synth: Synth) -> None:
    # measured as deployed (names and ARNs filled in), as JSON: a function over it fails the
    # deployment, and the dataset's spec once made the transform's grow with its columns
    resolver = Resolver(synth.all_templates())
    measured = 0
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            size = len(json.dumps(resolver.resolve(stack.stack_name, variables), separators=(",", ":")))
            assert size <= MAX_FUNCTION_ENVIRONMENT, (stack.stack_name, logical, size)
            measured += 1
    assert measured >= 3


def test_every_rules_dead_letter_queue_lets_that_rule_send(synth: Synth) -> None:
    # EventBridge puts an event it could not deliver in the target's dead-letter queue only if the
    # queue's policy lets that rule send (aws:SourceArn): else the alert is lost a second time
    resolver = Resolver(synth.all_templates())
    allowed: dict[str, set[str]] = {}
    rules = []
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] == "AWS::SQS::QueuePolicy":
                for queue in resource["Properties"]["Queues"]:
                    arn = resolver.resolve(stack.stack_name, {"Fn::GetAtt": [queue["Ref"], "Arn"]})
                    for st in resource["Properties"]["PolicyDocument"]["Statement"]:
                        if st["Effect"] == "Allow" and st["Principal"] == {"Service": "events.amazonaws.com"}:
                            sources = resolver.resolve(
                                stack.stack_name, st["Condition"]["ArnEquals"]["aws:SourceArn"]
                            )
                            allowed.setdefault(arn, set()).update(_list(sources))
            if resource["Type"] == "AWS::Events::Rule":
                rule = resolver.resolve(stack.stack_name, {"Fn::GetAtt": [logical, "Arn"]})
                for target in resource["Properties"].get("Targets", []):
                    if "DeadLetterConfig" in target:
                        queue = resolver.resolve(stack.stack_name, target["DeadLetterConfig"]["Arn"])
                        rules.append((rule, queue))
    assert len(rules) >= 10
    for rule, queue in rules:
        assert rule in allowed.get(queue, set()), (rule, queue)


def test_resource_policies_let_services_act_only_for_this_account(synth: Synth) -> None:
    # a service principal allowed on a bucket, topic, queue or key without a source condition acts
    # for any account that points the service at it (the confused deputy): each such statement
    # names the source account or resource, or an encryption context that does
    unguarded = []
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] not in POLICY_DOCUMENTS:
                continue
            for statement in resource["Properties"][POLICY_DOCUMENTS[resource["Type"]]]["Statement"]:
                principal = statement.get("Principal")
                if (
                    statement["Effect"] != "Allow"
                    or not isinstance(principal, dict)
                    or "Service" not in principal
                ):
                    continue
                keys = {key for operator in statement.get("Condition", {}).values() for key in operator}
                if not keys & {"aws:SourceAccount", "aws:SourceArn"} and not any(
                    key.startswith("kms:EncryptionContext:") for key in keys
                ):
                    unguarded.append((stack.stack_name, logical, statement.get("Sid"), statement["Action"]))
    # a function's resource policy likewise (a permission for a service names its source)
    for stack, logical, resource in _resources_of(synth, "AWS::Lambda::Permission"):
        props = resource["Properties"]
        if props["Principal"].endswith(".amazonaws.com") and not {"SourceArn", "SourceAccount"} & set(props):
            unguarded.append((stack.stack_name, logical, None, props["Action"]))
    assert unguarded == []


def _resources_of(synth: Synth, type_: str) -> Iterator[tuple[cdk.Stack, str, dict[str, Any]]]:
    """(stack, logical id, resource) of every resource of ``type_`` in the app."""
    for stack in synth.lake.stacks:
        for logical, resource in synth.template_json(stack)["Resources"].items():
            if resource["Type"] == type_:
                yield stack, logical, resource


def _role_statements(synth: Synth, resolver: Resolver) -> dict[str, list[dict[str, Any]]]:
    """Every role's allowed statements as deployed, from its inline policies and the policies
    attached to it in any stack (by reference or by name)."""
    roles: dict[str, list[dict[str, Any]]] = {}
    named: dict[str, str] = {}
    for stack, logical, resource in _resources_of(synth, "AWS::IAM::Role"):
        role, props = f"{stack.stack_name}/{logical}", resource["Properties"]
        if "RoleName" in props:
            named[resolver.resolve(stack.stack_name, props["RoleName"])] = role
        roles[role] = [
            resolver.resolve(stack.stack_name, st)
            for policy in props.get("Policies", [])
            for st in policy["PolicyDocument"]["Statement"]
        ]
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for stack, _, resource in _resources_of(synth, type_):
            document = resolver.resolve(stack.stack_name, resource["Properties"]["PolicyDocument"])
            for attached in resource["Properties"].get("Roles", []):
                is_ref = isinstance(attached, dict) and "Ref" in attached
                role = (
                    f"{stack.stack_name}/{attached['Ref']}"
                    if is_ref
                    else named[resolver.resolve(stack.stack_name, attached)]
                )
                roles[role].extend(document["Statement"])
    return {role: [st for st in sts if st["Effect"] == "Allow"] for role, sts in roles.items()}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _allows(granted: set[str], action: str) -> bool:
    return any(g == action or (g.endswith("*") and action.startswith(g[:-1])) for g in granted)


#: What each optimized Step Functions integration the app uses calls, as its IAM page lists
#: ("IAM policies for integrated services"); an AWS SDK integration calls its own action.
OPTIMIZED_INTEGRATIONS = {
    "glue:startJobRun.sync": (
        "glue:StartJobRun",
        "glue:GetJobRun",
        "glue:GetJobRuns",
        "glue:BatchStopJobRun",
    ),
    "sns:publish": ("sns:Publish",),
    "athena:startQueryExecution.sync": (
        "athena:StartQueryExecution",
        "athena:GetQueryExecution",
        "athena:StopQueryExecution",
    ),
}


def test_every_state_machine_task_is_allowed_by_its_role(synth: Synth) -> None:
    # a task its role may not call fails at run time, which the moto execution tests cannot see
    resolver = Resolver(synth.all_templates())
    roles = _role_statements(synth, resolver)
    checked = 0
    for stack, logical, resource in _resources_of(synth, "AWS::StepFunctions::StateMachine"):
        definition = json.loads(
            resolver.resolve(stack.stack_name, resource["Properties"]["DefinitionString"])
        )
        role = f"{stack.stack_name}/{resource['Properties']['RoleArn']['Fn::GetAtt'][0]}"
        granted = [set(_list(st["Action"])) for st in roles[role]]
        for task in [st for st in definition["States"].values() if st["Type"] == "Task"]:
            integration = task["Resource"].removeprefix("arn:aws:states:::")
            service, _, call = integration.removeprefix("aws-sdk:").partition(":")
            needed = (
                (f"{service}:{call[0].upper()}{call[1:]}",)
                if integration.startswith("aws-sdk:")
                else OPTIMIZED_INTEGRATIONS[integration]
            )
            for action in needed:
                assert any(_allows(actions, action) for actions in granted), (logical, action)
                checked += 1
    assert checked >= 20


#: The call EventBridge Scheduler makes on each kind of target it starts.
SCHEDULER_CALLS = {"states": "states:StartExecution", "lambda": "lambda:InvokeFunction"}


def _data_api_calls(
    synth: Synth, stack: cdk.Stack, arn: str, payload: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """What a universal target of the Redshift Data API (``...:aws-sdk:redshiftdata:<call>``)
    needs: its call, and with no secret the temporary credentials of the workgroup its input
    names; the workgroup's ARN, as a template attribute."""
    call = arn.rsplit(":", 1)[1]
    needed = [f"redshift-data:{call[0].upper()}{call[1:]}"]
    if "SecretArn" not in payload:
        needed.append("redshift-serverless:GetCredentials")
    (workgroup,) = [
        lid
        for lid, r in synth.template_json(stack)["Resources"].items()
        if r["Type"] == "AWS::RedshiftServerless::Workgroup"
        and r["Properties"]["WorkgroupName"] == payload["WorkgroupName"]
    ]
    return needed, {"Fn::GetAtt": [workgroup, "Workgroup.WorkgroupArn"]}


def test_every_schedule_may_start_its_target(synth: Synth) -> None:
    # a schedule whose role may not start its target drops every start after its retries
    resolver = Resolver(synth.all_templates())
    roles = _role_statements(synth, resolver)
    schedules = 0
    for stack, logical, resource in _resources_of(synth, "AWS::Scheduler::Schedule"):
        target = resource["Properties"]["Target"]
        arn = resolver.resolve(stack.stack_name, target["Arn"])
        role = f"{stack.stack_name}/{target['RoleArn']['Fn::GetAtt'][0]}"
        if ":aws-sdk:redshiftdata:" in arn:  # a universal target names a call, not a resource
            needed, on = _data_api_calls(synth, stack, arn, json.loads(target["Input"]))
            resource_arn = resolver.resolve(stack.stack_name, on)
        else:
            needed, resource_arn = [SCHEDULER_CALLS[arn.split(":")[2]]], arn
        for action in needed:
            assert any(
                _allows(set(_list(st["Action"])), action) and resource_arn in _list(st.get("Resource", []))
                for st in roles[role]
            ), (logical, action, resource_arn)
        schedules += 1
    assert schedules >= 2


def test_every_function_may_write_to_its_own_log_group(synth: Synth) -> None:
    # a function that cannot write its log fails silently: no error, no line to read. CDK's own
    # custom-resource providers (logical ids Custom...) log where Lambda's managed policy lets them
    resolver = Resolver(synth.all_templates())
    roles = _role_statements(synth, resolver)
    functions = 0
    for stack, logical, resource in _resources_of(synth, "AWS::Lambda::Function"):
        props = resource["Properties"]
        if "LoggingConfig" not in props:
            assert logical.startswith("Custom"), logical
            continue
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        streams = resolver.resolve(stack.stack_name, {"Fn::GetAtt": [group, "Arn"]})
        role = f"{stack.stack_name}/{props['Role']['Fn::GetAtt'][0]}"
        assert any(
            _allows(set(_list(st["Action"])), "logs:PutLogEvents")
            and any(str(r).startswith(streams.removesuffix("*")) for r in _list(st.get("Resource", [])))
            for st in roles[role]
        ), logical
        functions += 1
    assert functions >= 1  # the transform at least; with the trail and Macie on, their functions too


def test_every_role_that_reads_or_writes_a_kms_bucket_may_use_its_key(synth: Synth) -> None:
    # S3 decrypts and encrypts SSE-KMS objects with the caller's own KMS permissions: a role that
    # may read or write a bucket but not use its key fails at run time with AccessDenied
    resolver = Resolver(synth.all_templates())
    foundation = synth.lake.foundation
    bucket_keys = {}
    for resource in synth.template_json(foundation)["Resources"].values():
        if resource["Type"] == "AWS::S3::Bucket":
            (rule,) = resource["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            key = rule["ServerSideEncryptionByDefault"].get("KMSMasterKeyID")
            if key is not None:
                name = resolver.resolve(foundation.stack_name, resource["Properties"]["BucketName"])
                bucket_keys[name] = resolver.resolve(foundation.stack_name, key)
    checked, missing = [], []
    for role, statements in _role_statements(synth, resolver).items():
        needs: dict[str, set[str]] = {}
        keys: dict[str, set[str]] = {}
        for st in statements:
            actions = set(_list(st["Action"]))
            for arn in _list(st.get("Resource", [])):
                bucket = arn.removeprefix("arn:aws:s3:::").split("/")[0] if "/" in arn else None
                if bucket in bucket_keys:
                    if _allows(actions, "s3:GetObject"):
                        needs.setdefault(bucket, set()).add("kms:Decrypt")
                    if _allows(actions, "s3:PutObject"):
                        needs.setdefault(bucket, set()).add("kms:GenerateDataKey")
                # a key used through another service (kms:ViaService) is no use to S3
                via = (
                    st.get("Condition", {})
                    .get("StringEquals", {})
                    .get("kms:ViaService", f"s3.{REGION}.amazonaws.com")
                )
                if (arn.startswith("arn:aws:kms:") or arn == "*") and via == f"s3.{REGION}.amazonaws.com":
                    keys.setdefault(arn, set()).update(a for a in actions if a.startswith("kms:"))
        for bucket, actions in needs.items():
            granted = keys.get(bucket_keys[bucket], set()) | keys.get("*", set())
            checked.append((role, bucket))
            missing += [(role, bucket, a) for a in sorted(actions) if not _allows(granted, a)]
    assert missing == []
    # the job reads raw and writes curated, the delivery role writes raw, the analysts their results
    assert len(checked) >= 15


def test_state_machine_roles_serve_only_this_accounts_state_machines(synth: Synth) -> None:
    guards = [
        synth.resolved(stack, statement["Condition"])
        for stack in synth.lake.stacks
        for resource in synth.template_json(stack)["Resources"].values()
        if resource["Type"] == "AWS::IAM::Role"
        for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if statement["Principal"].get("Service") == "states.amazonaws.com"
    ]
    assert len(guards) >= 2  # the pipeline's and the daily report's
    for guard in guards:
        assert guard == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:*"},
        }


def test_every_rule_on_api_calls_names_the_source_eventbridge_gives_their_service(synth: Synth) -> None:
    # EventBridge delivers a call CloudTrail logged from <service>.amazonaws.com under the source
    # aws.<service> (its event reference, for each service: Macie's calls as aws.macie2, while its
    # findings come as aws.macie): a rule with another source matches nothing, silently
    rules = 0
    for _, logical, resource in _resources_of(synth, "AWS::Events::Rule"):
        pattern = resource["Properties"]["EventPattern"]
        if pattern.get("detail-type") != ["AWS API Call via CloudTrail"]:
            continue
        sources = [s.removesuffix(".amazonaws.com") for s in pattern["detail"]["eventSource"]]
        assert pattern["source"] == [f"aws.{s}" for s in sources], logical
        rules += 1
    assert rules >= 10


#: Job arguments whose S3 locations Glue loads code from at the start of every run.
CODE_ARGUMENTS = ("--extra-py-files", "--extra-jars", "--extra-files")


def test_every_glue_job_runs_code_from_a_bucket_whose_writes_alert(synth: Synth) -> None:
    # Glue reads a job's script and its extra files at every run: where anyone could overwrite
    # them unseen, the job's role (raw PII) would run their code with no change to the job
    foundation = synth.lake.foundation
    (watched,) = [
        synth.resolved(
            foundation, r["Properties"]["EventPattern"]["detail"]["requestParameters"]["bucketName"]
        )
        for r in synth.template_json(foundation)["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
        and r["Properties"]["EventPattern"]["source"] == ["aws.s3"]
        and "PutObject" in r["Properties"]["EventPattern"]["detail"]["eventName"]
    ]
    jobs = 0
    for stack, logical, resource in _resources_of(synth, "AWS::Glue::Job"):
        props = synth.resolved(stack, resource["Properties"])
        arguments = props.get("DefaultArguments", {})
        locations = [props["Command"]["ScriptLocation"]]
        locations += [loc for arg in CODE_ARGUMENTS if arg in arguments for loc in arguments[arg].split(",")]
        assert len(locations) >= 2, logical  # the entry point and the transforms
        for location in locations:
            assert location.removeprefix("s3://").split("/")[0] in watched, (logical, location)
        jobs += 1
    assert jobs >= 1


#: The resources the alerts on changes outside a deployment find by the stage's name prefix (the
#: IAM alarm in cdk_constructs/audit.py, the EventBridge rules in stacks/foundation.py), and the
#: property that names each.
NAMED_BY_PREFIX = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::Glue::Job": "Name",
    "AWS::Glue::Crawler": "Name",
    "AWS::Glue::DataQualityRuleset": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Athena::WorkGroup": "Name",
    "AWS::RedshiftServerless::Workgroup": "WorkgroupName",
    "AWS::RedshiftServerless::Namespace": "NamespaceName",
}


def test_every_watched_resource_is_named_after_the_stage(synth: Synth) -> None:
    # a name this app gives starts with the stage prefix, and CloudFormation names the others
    # after their stack, whose name does
    prefix = synth.lake.foundation.stack_name.removesuffix("-foundation")
    for stack in synth.lake.stacks:
        assert stack.stack_name.startswith(f"{prefix}-")
        for logical, resource in synth.template_json(stack)["Resources"].items():
            key = NAMED_BY_PREFIX.get(resource["Type"])
            if key is not None and key in resource["Properties"]:
                name = synth.resolved(stack, resource["Properties"][key])
                assert name.startswith(f"{prefix}-"), (stack.stack_name, logical, name)


def _first_cells(markdown: str) -> list[str]:
    """The first cell of every row of the tables in ``markdown``."""
    return [
        line.split(" | ")[0]
        for line in markdown.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]


def _logical_stem(logical: str) -> str:
    """A logical id without the hash CDK appends to it."""
    return re.sub(r"[0-9A-F]{8}$", "", logical)


def test_every_alarm_has_a_runbook_row(synth: Synth) -> None:
    # An operator paged by an alarm knows its name alone (<stack>-<construct path>): the
    # runbook's row for it is the one whose first cell's bold word ends it, its dashes left out.
    words = {
        w.replace(" ", "")
        for cell in _first_cells(RUNBOOK.read_text())
        for w in re.findall(r"\*\*([A-Za-z ]+)\*\*", cell)
    }
    missing = [
        f"{stack.stack_name}: {alarm['Properties']['AlarmName']}"
        for stack, _, alarm in _resources_of(synth, "AWS::CloudWatch::Alarm")
        if not any(
            alarm["Properties"]["AlarmName"]
            .replace("-", "")
            .endswith((w, f"{w}Alarm", w.removesuffix("Alarm") or w))
            for w in words
        )
    ]
    assert not missing, "docs/runbook.md has no row whose bold word ends these alarms:\n" + "\n".join(missing)


def test_every_alert_message_has_a_runbook_row(synth: Synth) -> None:
    # What an alert rule publishes starts with what it is about ("Lake KMS key <name>: ...",
    # "Crawler of orders failed: ..."): the runbook's row for it says the same in bold.
    bold = [b for cell in _first_cells(RUNBOOK.read_text()) for b in re.findall(r"\*\*(.+?)\*\*", cell)]
    datasets = "|".join(map(re.escape, synth.lake.processing.pipelines))
    missing = []
    for stack, logical, rule in _resources_of(synth, "AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            template = target.get("InputTransformer", {}).get("InputTemplate")
            if template is None:
                continue
            message = re.sub(rf"\b({datasets})\b", "`<dataset>`", json.loads(template))
            about = re.split(r"(?<!`)<(?!dataset>)|[:,]", message)[0].strip()
            if not any(about in b for b in bold):
                missing.append(f"{stack.stack_name} {logical}: {about!r}")
    assert not missing, "docs/runbook.md has no row for these alerts:\n" + "\n".join(missing)


def test_every_role_has_a_row_in_the_security_model(synth: Synth) -> None:
    # A reviewer finds a role of the account (by its name, or CloudFormation's
    # <stack>-<logical id>-<suffix>) in docs/security.md's table of roles: a named role's row
    # gives its name (<prefix>, <dataset> standing for any text), an unnamed one's the word that
    # ends its logical id, in code. A name of placeholders alone (the stream `<prefix>-<dataset>`
    # beside its role) would match any role's name: it names none.
    roles_table = SECURITY.read_text().split("## Personas and service roles")[1].split("\n## ")[0]
    names, endings = [], set()
    for code in (c for cell in _first_cells(roles_table) for c in re.findall(r"`([^`]+)`", cell)):
        literals = re.split(r"<[a-z]+>", code)
        if re.fullmatch(r"[A-Za-z]+", code):
            endings.add(code)
        elif re.search(r"[a-z]", "".join(literals)):
            names.append(re.compile(".+".join(map(re.escape, literals))))
    resolver = Resolver(synth.all_templates())
    missing = []
    for stack, logical, role in _resources_of(synth, "AWS::IAM::Role"):
        if "RoleName" in role["Properties"]:
            name = resolver.resolve(stack.stack_name, role["Properties"]["RoleName"])
            if not any(n.fullmatch(name) for n in names):
                missing.append(f"{stack.stack_name}: {name}")
        elif not _logical_stem(logical).endswith(tuple(endings)):
            missing.append(f"{stack.stack_name}: {logical}")
    assert not missing, "docs/security.md's table of roles does not name:\n" + "\n".join(missing)


def test_cdk_reports_no_warnings_or_errors(synth: Synth) -> None:
    assert synth.cdk_findings() == []


def test_every_stack_of_the_app_is_checked(synth: Synth) -> None:
    # Lake.stacks drives every template test: a stack missing from it would go unchecked.
    import aws_cdk as cdk

    in_app = {c.node.path for c in synth.app.node.children if isinstance(c, cdk.Stack)}
    assert {s.node.path for s in synth.lake.stacks} == in_app
    assert len(in_app) == 7


def test_each_dataset_adds_as_much_to_every_stack_as_the_one_before(tmp_path: Path) -> None:
    # GIVEN the two-dataset lake, and the same lake with one and two more datasets shaped and
    # named like the second (the last letter of its name changed)
    spec = json.loads(Path(SECOND_DATASET).read_text())
    copies = []
    for letter in "yz":
        name = spec["name"][:-1] + letter
        copies.append(str(tmp_path / f"{name}.json"))
        Path(copies[-1]).write_text(json.dumps({**spec, "name": name}))
    lakes = [
        synthesize("prod", **{**TWO_DATASETS, "extra_datasets": (SECOND_DATASET, *copies[:n])})
        for n in (0, 1, 2)
    ]
    sizes = [
        {
            name: (len(t["Resources"]), len(json.dumps(t, separators=(",", ":"))))
            for name, t in lake.all_templates().items()
        }
        for lake in lakes
    ]
    # THEN the third dataset adds to every stack the resources the fourth adds, and as many bytes
    # give or take a few (the dashboard's coordinates grow a digit): nothing grows with the square
    # of the datasets, as the catalog's grants once did
    for stack in sizes[0]:
        (r2, b2), (r3, b3), (r4, b4) = (size[stack] for size in sizes)
        assert r4 - r3 == r3 - r2, stack
        assert abs((b4 - b3) - (b3 - b2)) <= 16, (stack, b3 - b2, b4 - b3)


def test_a_second_dataset_file_fans_out_to_every_stack() -> None:
    # GIVEN the shipped orders file and a second dataset file with a Kinesis source, every column
    # type and the longest name the stage prefix allows (its synth passing every pack and cfn-lint
    # is the variant above)
    synth = synthesize("prod", **TWO_DATASETS)
    second = load_dataset(SECOND_DATASET)
    assert len(second.name) == longest_dataset_name(get_stage("prod").prefix)
    ids = {"orders": "Orders", second.name: second.construct_id}
    for name, template in synth.all_templates().items():
        resources = template["Resources"]
        kinds = {
            ds: Counter(r["Type"] for lid, r in resources.items() if cid in lid) for ds, cid in ids.items()
        }
        # THEN every stack holds the same kinds of resource for each dataset; only the source
        # stream is the second's alone, and the alarm on a silent source its file asks for; the
        # row filter (a data-cells filter, and its reader's grants) orders' alone
        extra = (
            Counter({"AWS::Kinesis::Stream": 1, "AWS::CloudWatch::Alarm": 1})
            if name.endswith("-ingestion")
            else Counter()
        )
        filtered = (
            Counter({"AWS::LakeFormation::DataCellsFilter": 1, "AWS::LakeFormation::PrincipalPermissions": 2})
            if name.endswith("-catalog")
            else Counter()
        )
        assert kinds[second.name] + filtered == kinds["orders"] + extra, name
    assert second.governance.row_filter_column is None
    # AND a dataset adds no output to a stack but the two the dashboard's metrics read from its
    # ingestion and processing stacks (its delivery stream and transform, its state machine and
    # job): every other stack addresses its resources by name
    per_dataset = {
        stack.stack_name.rsplit("-", 1)[1]: sum(
            cid in output
            for output in synth.own_template_json(stack).get("Outputs", {})
            for cid in ids.values()
        )
        for stack in synth.lake.stacks
    }
    assert per_dataset == {
        "foundation": 0,
        "governance": 0,
        "catalog": 0,
        "ingestion": 4,
        "processing": 4,
        "consumption": 0,
        "observability": 0,
    }
    processing = synth.all_templates()["lake-prd-processing"]["Resources"]
    jobs = {r["Properties"]["Name"] for r in processing.values() if r["Type"] == "AWS::Glue::Job"}
    assert jobs == {"lake-prd-orders-raw-to-curated", f"lake-prd-{second.resource_name}-raw-to-curated"}
    # AND the one dashboard shows each pipeline alike: as many references to each dataset's
    # resources (stack outputs) and names (metric dimensions, rulesets, section titles), and
    # the second's silent-source alarm among the states of every alarm
    body = json.dumps(synth.all_templates()["lake-prd-observability"]["Resources"])
    assert body.count(ids[second.name]) == body.count("Orders") + 1 > 1
    assert f":alarm:lake-prd-ingestion-{ids[second.name]}Silent" in body
    # AND that alarm: no record read from the second's Kinesis source in each of the 3 hours its
    # file names, an hour without data counting, after a warm-up of those hours; orders has none
    ingestion = synth.all_templates()["lake-prd-ingestion"]["Resources"]
    silent = {lid: r["Properties"] for lid, r in ingestion.items() if "SilentAlarm" in lid}
    (alarm,) = [a for lid, a in silent.items() if lid.startswith(ids[second.name])]
    assert len(silent) == 1 and second.ingestion.silent_after_hours == 3
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Firehose", "DataReadFromKinesisStream.Records")
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        "Sum",
        3600,
        3,
        3,
    )
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )
    assert alarm["WarmUpConfiguration"] == {
        "WarmUpPeriodDurationInMinutes": 180,
        "OnlyStartEvaluatingAfterWarmUpPeriodEnds": True,
    }
    assert alarm["AlarmActions"] == alarm["OKActions"] and alarm["AlarmActions"]
    assert body.count(second.name) + body.count(second.resource_name) == body.count("orders") > 0
