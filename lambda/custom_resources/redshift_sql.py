"""Custom resource: run bootstrap SQL in Redshift Serverless through the Data API.

Properties: ``WorkgroupName``, ``Database``, ``NamespaceName`` (its admin secret, which Redshift
manages, is looked up) and ``Statements`` (in order). Each statement runs on its own and is waited for; a failure
stops the run and reports the statement and Redshift's error text. A statement whose leading
comment lines include ``-- ok-if-exists`` succeeds when Redshift says its object already exists
(for commands without ``IF NOT EXISTS``).

Create and Update run every statement (they are written to be re-runnable). Delete runs
nothing: the objects live in the namespace's database, which the namespace's own removal
policy keeps or deletes; dropping them here would break a replacement that is still in use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError
from cfn import Outcome, ResourceError, handle

OK_IF_EXISTS = "-- ok-if-exists"
_EXISTS = re.compile(r"already (exists|attached)|duplicate", re.IGNORECASE)
DONE = ("FINISHED", "FAILED", "ABORTED")


def _client() -> Any:
    return boto3.client("redshift-data")


def _namespaces() -> Any:
    return boto3.client("redshift-serverless")


def admin_secret_arn(namespace: str) -> str:
    """The admin secret Redshift created for ``namespace`` (manage_admin_password)."""
    try:
        arn = _namespaces().get_namespace(namespaceName=namespace)["namespace"].get("adminPasswordSecretArn")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ResourceError(
            f"GetNamespace {namespace} failed: {error.get('Code')}: {error.get('Message')}"
        ) from exc
    if not arn:
        raise ResourceError(
            f"namespace {namespace} has no Redshift-managed admin secret; set manage_admin_password"
        )
    return str(arn)


def _first_line(sql: str) -> str:
    lines = [line for line in sql.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    text = lines[0].strip() if lines else sql.strip()
    return text if len(text) <= 120 else text[:117] + "..."


def run_statement(
    client: Any,
    props: Mapping[str, Any],
    secret_arn: str,
    sql: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float = 600.0,
) -> None:
    """Execute ``sql`` and wait for it; raise ResourceError with Redshift's message on failure."""
    try:
        statement_id = client.execute_statement(
            WorkgroupName=props["WorkgroupName"],
            Database=props["Database"],
            SecretArn=secret_arn,
            Sql=sql,
            StatementName="lake-bootstrap",
        )["Id"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ResourceError(
            f"Data API refused `{_first_line(sql)}`: {error.get('Code')}: {error.get('Message')}"
        ) from exc
    waited, delay = 0.0, 0.5
    while True:
        status = client.describe_statement(Id=statement_id)
        if status["Status"] in DONE:
            break
        if waited >= deadline:
            raise ResourceError(
                f"`{_first_line(sql)}` still {status['Status']} after {deadline:.0f} s (statement {statement_id})"
            )
        sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)
    if status["Status"] == "FINISHED":
        return
    message = status.get("Error", "no error text")
    if status["Status"] == "FAILED" and OK_IF_EXISTS in sql and _EXISTS.search(message):
        return
    raise ResourceError(f"Redshift {status['Status'].lower()} `{_first_line(sql)}`: {message}")


def _run_all(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    statements = list(props.get("Statements") or [])
    if not statements:
        raise ResourceError("Statements is empty: give the SQL to run")
    secret_arn = admin_secret_arn(props["NamespaceName"])
    client = _client()
    for sql in statements:
        run_statement(client, props, secret_arn, sql)
    physical = f"{props['WorkgroupName']}/{props['Database']}/bootstrap"
    return Outcome(physical, {"Statements": str(len(statements))})


def create(props: Mapping[str, Any], event: Mapping[str, Any]) -> Outcome:
    return _run_all(props, event)


def update(
    physical_id: str, props: Mapping[str, Any], old: Mapping[str, Any], event: Mapping[str, Any]
) -> Outcome:
    return _run_all(props, event)


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    return None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, create=create, update=update, delete=delete)
