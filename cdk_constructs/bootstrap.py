"""What the CDK bootstrap gives a stack's deployments: the role CloudFormation deploys with, and
the bucket and role its file assets are published with (the default synthesizer's, by its
qualifier)."""

from __future__ import annotations

from aws_cdk import DefaultStackSynthesizer, Fn, Stack

#: The S3 data events that write or remove an object of :func:`assets_bucket_name`, or change its
#: ACL (``DeleteObjects`` names no key). ``sql/audit/deployment_asset_writes.sql`` lists the same.
#: The rule matches them by ``requestParameters.bucketName`` and reports ``requestParameters.key``,
#: the fields aws-cdk-lib's own ``Bucket.on_cloud_trail_write_object`` matches for the first three.
ASSET_WRITES = (
    "PutObject",
    "CopyObject",
    "CompleteMultipartUpload",
    "PutObjectAcl",
    "DeleteObject",
    "DeleteObjects",
)


def _synthesizer(stack: Stack) -> DefaultStackSynthesizer:
    synthesizer = stack.synthesizer
    if not isinstance(synthesizer, DefaultStackSynthesizer):
        raise ValueError(
            f"stack {stack.stack_name}: the lake tells deployments from other changes by the default "
            f"synthesizer's bootstrap roles, and {type(synthesizer).__name__} has none; use "
            "DefaultStackSynthesizer (its qualifier may be changed: cdk.json's "
            '"@aws-cdk/core:bootstrapQualifier")'
        )
    return synthesizer


def _qualified(stack: Stack, template: str) -> str:
    qualifier = _synthesizer(stack).bootstrap_qualifier
    assert qualifier is not None  # a stack's synthesizer is bound as the stack is created
    return Fn.sub(template.replace("${Qualifier}", qualifier))


def execution_role_arn(stack: Stack) -> str:
    """The CDK execution role CloudFormation deploys ``stack`` with (the bootstrap's)."""
    return Fn.sub(_synthesizer(stack).cloud_formation_execution_role_arn)


def assets_bucket_name(stack: Stack) -> str:
    """The bootstrap's bucket of file assets: the Glue jobs' scripts, the functions' code and the
    templates of every deployment in the account and region."""
    return _qualified(stack, DefaultStackSynthesizer.DEFAULT_FILE_ASSETS_BUCKET_NAME)


def file_publishing_role_arn(stack: Stack) -> str:
    """The bootstrap's role that publishes file assets to :func:`assets_bucket_name` for a deployment."""
    return _qualified(stack, DefaultStackSynthesizer.DEFAULT_FILE_ASSET_PUBLISHING_ROLE_ARN)
