"""Custom resource: where Macie keeps its sensitive data discovery results (CloudFormation has no
resource for it).

Macie keeps a discovery result (the record of one object's analysis: what it found where, or why
it could not analyze the object) for 90 days. With a repository set, it also writes each result,
encrypted with a KMS key, to an S3 bucket, which keeps them as long as the bucket does. The
setting is the account's, in this region (``PutClassificationExportConfiguration``).

Properties (strings, as CloudFormation passes them): ``Bucket``, ``KeyPrefix``, ``KmsKeyArn``.

Create and update put the setting. Delete leaves it: Macie has no call that removes it, only one
that points it elsewhere, and disabling Macie (the sandbox's destroy deletes the session this app
enabled) removes it with every other setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from cfn import Outcome, ResourceError, aws_client, aws_error, handle


def _client() -> Any:
    return aws_client("macie2")


def _destination(props: Mapping[str, Any]) -> dict[str, str]:
    missing = [name for name in ("Bucket", "KeyPrefix", "KmsKeyArn") if not props.get(name)]
    if missing:
        raise ResourceError(f"{', '.join(missing)} missing: name the bucket, its key prefix and the KMS key")
    return {
        "bucketName": str(props["Bucket"]),
        "keyPrefix": str(props["KeyPrefix"]),
        "kmsKeyArn": str(props["KmsKeyArn"]),
    }


def create(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    destination = _destination(props)
    try:
        _client().put_classification_export_configuration(configuration={"s3Destination": destination})
    except ClientError as exc:
        raise ResourceError(
            f"Macie PutClassificationExportConfiguration failed: {aws_error(exc)}. Macie checks that it "
            f"may write to s3://{destination['bucketName']}/{destination['keyPrefix']} (the bucket "
            "policy) and encrypt with the key (the key policy) before it accepts the setting."
        ) from exc
    location = f"s3://{destination['bucketName']}/{destination['keyPrefix']}"
    return Outcome(location, {"Location": location})


def update(
    physical_id: str, props: Mapping[str, Any], old: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    return create(props, event)


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    return None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, create=create, update=update, delete=delete)
