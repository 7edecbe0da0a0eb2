"""Stand-ins the Lambda handler tests share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools' Logger reads."""

    function_name: str = "function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:function"
    aws_request_id: str = "req-1"
