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
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.functions import Unneeded, python_function

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
        self.function = python_function(
            self,
            code=CODE_DIR,
            handler=handler,
            description=description,
            statements=statements,
            logs_key=logs_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=self.timeout,
            # CloudFormation invokes asynchronously; a retry would run the request again after
            # CloudFormation has stopped waiting for it (see service_timeout in resource()).
            retry_attempts=0,
            environment=environment,
            wildcard_reason=wildcard_reason,
            unneeded=Unneeded(
                dead_letter="CloudFormation invokes custom-resource functions and waits for their answer; "
                "the function reports every failure to CloudFormation itself, which fails the "
                "deployment, so a DLQ or failure destination would hold nothing anyone acts on.",
                reserved_concurrency="Runs only during deployments, once per resource change; reserving "
                "concurrency would fail deployment in new accounts whose limit is 10.",
                vpc="Calls only AWS control-plane APIs over their public TLS endpoints during deployment "
                "and handles no lake data; a VPC would add endpoints without reducing exposure.",
                tracing="A deployment-time function with a handful of invocations per deploy; X-Ray "
                "traces would record only control-plane calls already in CloudTrail.",
            ),
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
