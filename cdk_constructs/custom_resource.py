"""Lambda-backed custom resources for what CloudFormation cannot declare (no provider framework).

The functions answer CloudFormation themselves (``lambda/custom_resources/cfn.py``), so each
custom resource is one function, one role and one log group; no Node.js framework function.

A function that dies without answering (out of memory, killed at its timeout) is not retried by
Lambda, and CloudFormation gives up on it a few minutes after the function's timeout instead of
after its default hour: the deployment fails fast and rolls back, and nothing runs twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.functions import PYTHON_RUNTIME
from cdk_constructs.nag import acknowledge, acknowledge_regulatory, wildcard_findings

CODE_DIR = Path(__file__).resolve().parent.parent / "lambda" / "custom_resources"
#: How long CloudFormation waits for an answer beyond the function's timeout: the asynchronous
#: invocation's queueing and start, and the answer's PUT.
ANSWER_GRACE = Duration.minutes(5)


class CustomResourceFunction(Construct):
    """A Python function in ``lambda/custom_resources/`` that backs one kind of custom resource.

    :param handler: ``module.function``, e.g. ``macie_job.handler``.
    :param statements: everything the function may do besides writing its own logs.
    :param wildcard_reason: why the wildcards in ``statements`` are needed (acknowledged per
        finding); required when there are any.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        statements: Sequence[iam.PolicyStatement],
        logs_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        timeout: Duration | None = None,
        wildcard_reason: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.timeout = timeout or Duration.minutes(5)
        log_group = logs.LogGroup(
            self, "Logs", encryption_key=logs_key, retention=log_retention, removal_policy=removal_policy
        )
        role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
        )
        policy = iam.ManagedPolicy(
            self,
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
                raise ValueError(f"{construct_id}: wildcards {findings} need a wildcard_reason")
            acknowledge(policy, wildcard_reason, *findings)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(str(CODE_DIR), exclude=["__pycache__", "*.pyc"]),
            role=role.without_policy_updates(),
            memory_size=256,
            timeout=self.timeout,
            # CloudFormation invokes asynchronously; a retry would run the request again after
            # CloudFormation has stopped waiting for it (see service_timeout in resource()).
            retry_attempts=0,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment=dict(environment or {}),
        )
        self.function.node.add_dependency(policy)
        reason = (
            "CloudFormation invokes custom-resource functions and waits for their answer; the "
            "function reports every failure to CloudFormation itself, which fails the deployment, "
            "so a DLQ or failure destination would hold nothing anyone acts on."
        )
        acknowledge_regulatory(self.function, "LambdaDLQ", reason)
        acknowledge(self.function, reason, "Serverless-LambdaDLQ", "Serverless-LambdaAsyncFailureDestination")
        acknowledge_regulatory(
            self.function,
            "LambdaConcurrency",
            "Runs only during deployments, once per resource change; reserving concurrency would "
            "fail deployment in new accounts whose limit is 10.",
        )
        acknowledge_regulatory(
            self.function,
            "LambdaInsideVPC",
            "Calls only AWS control-plane APIs over their public TLS endpoints during deployment and "
            "handles no lake data; a VPC would add endpoints without reducing exposure.",
        )
        acknowledge(
            self.function,
            "A deployment-time function with a handful of invocations per deploy; X-Ray traces would "
            "record only control-plane calls already in CloudTrail.",
            "Serverless-LambdaTracing",
        )

    def resource(
        self, scope: Construct, construct_id: str, *, resource_type: str, properties: Mapping[str, Any]
    ) -> CustomResource:
        custom = CustomResource(
            scope,
            construct_id,
            service_token=self.function.function_arn,
            resource_type=resource_type,
            properties=dict(properties),
            service_timeout=self.timeout.plus(ANSWER_GRACE),
        )
        # After everything of the function, its no-retry setting included, so that not even the
        # first request can be retried.
        custom.node.add_dependency(self.function)
        return custom
