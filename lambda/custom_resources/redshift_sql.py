"""Custom resource: run bootstrap SQL in Redshift Serverless through the Data API.

Properties: ``WorkgroupName``, ``Database``, ``NamespaceName`` (its admin secret, which Redshift
manages, is looked up) and ``Statements`` (in order). Each statement runs on its own and is waited for; a failure
stops the run and reports the statement and Redshift's error text. A statement whose leading
comment lines include ``-- ok-if-exists`` succeeds when Redshift says its object already exists
(for commands without ``IF NOT EXISTS``).

Create and Update run every statement (they are written to be re-runnable). Delete runs
nothing: the objects live in the namespace's database, which the namespace's own removal
policy keeps or deletes; dropping them here would break a replacement that is still in use.

The wait is bounded by the invocation's own time: the run stops waiting ``ANSWER_MARGIN`` seconds
before the function's timeout, cancels the statement still running (it would otherwise go on
beside the statements of a rollback or the next deploy) and answers CloudFormation naming it,
instead of leaving CloudFormation to wait out its own timeout on a function stopped mid-wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cfn import Outcome, ResourceError, aws_client, aws_error, handle

OK_IF_EXISTS = "-- ok-if-exists"
_EXISTS = re.compile(r"already (exists|attached)|duplicate", re.IGNORECASE)
DONE = ("FINISHED", "FAILED", "ABORTED")
#: What to do after a run that ran out of time: its statements are written to be re-runnable.
RERUN = "the statements are re-runnable: deploy again"
#: Seconds of the invocation kept back to answer CloudFormation: the call to Redshift in flight and
#: the cancellation of the statement (31 s at most each, cfn.API_CONFIG), and the answer's PUT
#: (33 s at most: cfn.SEND_ATTEMPTS of cfn.SEND_TIMEOUT, 1 s and 2 s apart).
ANSWER_MARGIN = 100.0


def _client() -> Any:
    return aws_client("redshift-data")


def _namespaces() -> Any:
    return aws_client("redshift-serverless")


def admin_secret_arn(namespace: str) -> str:
    """The admin secret Redshift created for ``namespace`` (manage_admin_password)."""
    try:
        arn = _namespaces().get_namespace(namespaceName=namespace)["namespace"].get("adminPasswordSecretArn")
    except ClientError as exc:
        raise ResourceError(f"GetNamespace {namespace} failed: {aws_error(exc)}") from exc
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
    until: float,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Execute ``sql`` and wait for it; raise ResourceError with Redshift's message on failure.

    ``until`` is the ``clock`` time (``time.monotonic`` unless given) after which no more waiting
    fits; a statement still running then is cancelled and fails the run with its id.
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    try:
        statement_id = client.execute_statement(
            WorkgroupName=props["WorkgroupName"],
            Database=props["Database"],
            SecretArn=secret_arn,
            Sql=sql,
            StatementName="lake-bootstrap",
        )["Id"]
    except ClientError as exc:
        raise ResourceError(f"Data API refused `{_first_line(sql)}`: {aws_error(exc)}") from exc
    started, delay = clock(), 0.5
    while True:
        status = client.describe_statement(Id=statement_id)
        if status["Status"] in DONE:
            break
        if clock() + delay > until:
            raise ResourceError(
                f"`{_first_line(sql)}` still {status['Status']} after {clock() - started:.0f} s, when the "
                f"function had to stop waiting to answer in time; {_cancel(client, statement_id)} "
                f"(statement {statement_id}); {RERUN}"
            )
        sleep(delay)
        delay = min(delay * 2, 5.0)
    if status["Status"] == "FINISHED":
        return
    message = status.get("Error", "no error text")
    if status["Status"] == "FAILED" and OK_IF_EXISTS in sql and _EXISTS.search(message):
        return
    raise ResourceError(f"Redshift {status['Status'].lower()} `{_first_line(sql)}`: {message}")


def _cancel(client: Any, statement_id: str) -> str:
    """Cancel a statement given up on; say whether it was."""
    try:
        client.cancel_statement(Id=statement_id)
    except ClientError as exc:  # e.g. it finished meanwhile: only a running statement can be
        return f"not cancelled ({aws_error(exc)})"
    except BotoCoreError as exc:
        return f"not cancelled ({exc})"
    return "cancelled"


def run_all(props: Mapping[str, Any], *, until: float, clock: Callable[[], float] | None = None) -> Outcome:
    """Run every statement in order, none started or waited for past ``until`` (see run_statement)."""
    clock = clock or time.monotonic
    statements = list(props.get("Statements") or [])
    if not statements:
        raise ResourceError("Statements is empty: give the SQL to run")
    secret_arn = admin_secret_arn(props["NamespaceName"])
    client = _client()
    for number, sql in enumerate(statements, start=1):
        if clock() >= until:
            raise ResourceError(
                f"no time left to start `{_first_line(sql)}` (statement {number} of {len(statements)}); {RERUN}"
            )
        run_statement(client, props, secret_arn, sql, until=until, clock=clock)
    physical = f"{props['WorkgroupName']}/{props['Database']}/bootstrap"
    return Outcome(physical, {"Statements": str(len(statements))})


def delete(physical_id: str, props: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    return None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    until = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN
    return handle(
        event,
        context,
        create=lambda props, _event: run_all(props, until=until),
        update=lambda _physical, props, _old, _event: run_all(props, until=until),
        delete=delete,
    )
