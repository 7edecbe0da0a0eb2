"""What the lake's Python Lambda functions share: the runtime and the public Powertools layer."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

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
