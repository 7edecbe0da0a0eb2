"""A small CloudFormation custom-resource runtime: dispatch the request, always answer.

CloudFormation waits up to an hour for an answer, so every path ends in :func:`send`: success
with the physical id and data, or failure with a reason a person can act on (the first line of
the error, at most 1,000 characters, plus where to find the log).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

LOG = logging.getLogger(__name__)
LOG.setLevel(logging.INFO)

#: CloudFormation rejects responses over 4 KB; the reason is the part that can grow.
MAX_REASON = 1000
#: Properties CloudFormation reads itself; not the provider's, so never compared or passed on (a
#: changed ServiceTimeout must not look like a changed resource and replace it).
RESERVED = frozenset({"ServiceToken", "ServiceTimeout"})
#: The answer's PUT: attempts, and seconds each may take (the socket timeout of urllib). A
#: failed PUT is tried again, 1 s then 2 s later: nothing else retries it (the functions are not
#: retried by Lambda), and an answer lost leaves CloudFormation waiting for its ServiceTimeout.
SEND_ATTEMPTS = 3
SEND_TIMEOUT = 10
#: Every AWS call gives up within about 31 s: two attempts of at most 5 s to connect and 10 s to
#: read (botocore's defaults are 60 s each, and more attempts), so a slow endpoint cannot hold a
#: function past its timeout, where it could no longer answer.
API_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2})


@dataclass(frozen=True)
class Outcome:
    physical_id: str
    data: Mapping[str, str] = field(default_factory=dict)


def aws_client(service: str) -> Any:
    """A boto3 client for ``service`` whose calls are bounded by :data:`API_CONFIG`."""
    return boto3.client(service, config=API_CONFIG)


def _provider_properties(event: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The request's ``ResourceProperties`` or ``OldResourceProperties`` without :data:`RESERVED`."""
    return {k: v for k, v in event.get(key, {}).items() if k not in RESERVED}


class ResourceError(Exception):
    """A failure whose message is already what the person deploying should read."""


def aws_error(exc: Any) -> str:
    """``Code: Message`` of a botocore ``ClientError``, as the messages to CloudFormation quote it."""
    error = exc.response.get("Error", {})
    return f"{error.get('Code')}: {error.get('Message')}"


Operation = Callable[[Mapping[str, Any], Mapping[str, Any]], Outcome]


def handle(
    event: Mapping[str, Any],
    context: Any,
    *,
    create: Operation,
    update: Callable[[str, Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], Outcome],
    delete: Callable[[str, Mapping[str, Any], Mapping[str, Any]], None],
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> dict[str, Any]:
    """Run the request's operation and send CloudFormation the result. Returns the response sent."""
    request = event["RequestType"]
    props = _provider_properties(event, "ResourceProperties")
    # A failed Create still needs a physical id; the request id is unique and never a real one.
    physical = event.get("PhysicalResourceId") or f"failed-{event['RequestId']}"
    LOG.info("%s %s %s", request, event.get("LogicalResourceId"), physical)
    try:
        if request == "Create":
            outcome = create(props, event)
        elif request == "Update":
            old = _provider_properties(event, "OldResourceProperties")
            outcome = update(physical, props, old, event)
        elif request == "Delete":
            delete(physical, props, event)
            outcome = Outcome(physical)
        else:
            raise ResourceError(f"unknown request type {request!r}")
        response = _response(event, "SUCCESS", outcome.physical_id, data=outcome.data)
    except Exception as exc:
        LOG.exception("%s failed", request)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, ResourceError):
            reason = f"{type(exc).__name__}: {reason}"
        log = getattr(context, "log_stream_name", None)
        reason = reason[:MAX_REASON] + (f" (log stream {log})" if log else "")
        response = _response(event, "FAILED", physical, reason=reason)
    send(event["ResponseURL"], response, opener)
    return response


def _response(
    event: Mapping[str, Any],
    status: str,
    physical_id: str,
    *,
    data: Mapping[str, str] | None = None,
    reason: str = "",
) -> dict[str, Any]:
    return {
        "Status": status,
        "Reason": reason or status,
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": dict(data or {}),
    }


def send(
    url: str,
    response: Mapping[str, Any],
    opener: Callable[..., Any],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    body = json.dumps(response).encode()
    for attempt in range(1, SEND_ATTEMPTS + 1):
        # An empty content type, as AWS's cfn-response module sends: the URL is pre-signed for it.
        request = urllib.request.Request(
            url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
        )
        try:
            with opener(request, timeout=SEND_TIMEOUT) as reply:
                LOG.info("CloudFormation answered %s", getattr(reply, "status", "?"))
                return
        except OSError as exc:  # URLError, HTTPError, timeouts and resets are all OSErrors
            if attempt == SEND_ATTEMPTS:
                raise
            LOG.warning("answering CloudFormation failed (%s); trying again", exc)
            sleep(attempt)
