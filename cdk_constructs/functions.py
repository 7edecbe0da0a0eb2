"""What the lake's Python Lambda functions share: the runtime, the public Powertools layer, and
the role, log group and acknowledgements of a small function of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_regulatory, wildcard_findings

#: The newest Python for which Powertools publishes a layer, and Lambda runs.
PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_14


def powertools_layer_parameter(version: str) -> str:
    """Public SSM parameter that Powertools publishes in every region with its layer ARN.

    Resolving it at deploy time keeps the stacks environment-agnostic and the version pinned:
    https://docs.powertools.aws.dev/lambda/python/latest/#lambda-layer
    """
    return f"/aws/service/powertools/python/arm64/{PYTHON_RUNTIME.name}/{version}"


def powertools_layer(scope: Construct, construct_id: str, version: str) -> lambda_.ILayerVersion:
    """The public Powertools layer of ``version`` (arm64, :data:`PYTHON_RUNTIME`), by its SSM parameter."""
    arn = ssm.StringParameter.value_for_string_parameter(scope, powertools_layer_parameter(version))
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)


@dataclass(frozen=True)
class Unneeded:
    """Why a function of the lake goes without what the compliance packs ask of every function;
    each reason becomes the acknowledgement of those findings."""

    #: no dead-letter queue or failure destination (NIST, HIPAA, PCI and Serverless packs)
    dead_letter: str
    #: no reserved concurrency (NIST, HIPAA, PCI)
    reserved_concurrency: str
    #: not in a VPC (NIST, HIPAA, PCI)
    vpc: str
    #: no X-Ray tracing (Serverless)
    tracing: str


def python_function(
    scope: Construct,
    *,
    code: Path,
    handler: str,
    description: str,
    statements: Sequence[iam.PolicyStatement],
    logs_key: kms.IKey,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    timeout: Duration,
    unneeded: Unneeded,
    retry_attempts: int = 0,
    layers: Sequence[lambda_.ILayerVersion] = (),
    environment: Mapping[str, str] | None = None,
    wildcard_reason: str | None = None,
) -> lambda_.Function:
    """A Python function (arm64, 256 MB, JSON logs) from the folder ``code``, as children of
    ``scope``: its log group ``Logs`` (``logs_key``), its role ``Role`` and that role's managed
    policy ``Policy`` (writing its own logs, and ``statements``), and ``Function``, created after
    its policy. The acknowledgements say why it needs no dead letters, reserved concurrency, VPC
    or tracing (``unneeded``), and why it needs the wildcards of ``statements``
    (``wildcard_reason``, required when there are any)."""
    log_group = logs.LogGroup(
        scope, "Logs", encryption_key=logs_key, retention=log_retention, removal_policy=removal_policy
    )
    role = iam.Role(
        scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
    )
    policy = iam.ManagedPolicy(
        scope,
        "Policy",
        roles=[role],
        statements=[
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            ),
            *statements,
        ],
    )
    findings = wildcard_findings(policy)
    if findings:
        if wildcard_reason is None:
            raise ValueError(f"{scope.node.id}: wildcards {findings} need a wildcard_reason")
        acknowledge(policy, wildcard_reason, *findings)
    function = lambda_.Function(
        scope,
        "Function",
        description=description,
        runtime=PYTHON_RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=lambda_.Code.from_asset(str(code), exclude=["__pycache__", "*.pyc"]),
        layers=list(layers) or None,
        role=role.without_policy_updates(),
        memory_size=256,
        timeout=timeout,
        retry_attempts=retry_attempts,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        environment=dict(environment or {}),
    )
    function.node.add_dependency(policy)
    acknowledge_regulatory(function, "LambdaDLQ", unneeded.dead_letter)
    acknowledge(
        function, unneeded.dead_letter, "Serverless-LambdaDLQ", "Serverless-LambdaAsyncFailureDestination"
    )
    acknowledge_regulatory(function, "LambdaConcurrency", unneeded.reserved_concurrency)
    acknowledge_regulatory(function, "LambdaInsideVPC", unneeded.vpc)
    acknowledge(function, unneeded.tracing, "Serverless-LambdaTracing")
    return function
