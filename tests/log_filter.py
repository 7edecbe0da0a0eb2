"""CloudWatch Logs JSON filter patterns, evaluated on one log event offline (moto does not).

Only the part of the syntax the lake's metric filters write, with the meaning CloudWatch Logs'
guide gives it ("Using filter patterns to match terms in JSON log events", "Supported regular
expressions"): ``{ ... }`` around a condition; conditions joined by ``&&`` or ``||`` (one kind per
parenthesized group, so no precedence rule is assumed); ``$.a.b = "text"`` (exact, case-sensitive);
``$.a.b = %regex%`` (a regex search in the value); ``$.a.b != "text"``; ``$.a.b NOT EXISTS``. A
comparison on a field the event does not have is false, ``!=`` too: a pattern that means to match
an absent field says so with ``NOT EXISTS``. Anything else raises, rather than guess.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r'\s*(\{|\}|\(|\)|&&|\|\||NOT EXISTS|!=|=|"(?:[^"\\]|\\.)*"|%[^%]*%|\$(?:\.\w+)+)')
_MISSING = object()


def matches(pattern: str, event: dict[str, Any]) -> bool:
    """Whether ``pattern`` matches ``event`` (a CloudTrail record, as the trail's log group holds)."""
    tokens = _tokens(pattern)
    if tokens[0] != "{" or tokens[-1] != "}":
        raise ValueError(f"not a JSON filter pattern: {pattern}")
    value, end = _condition(tokens, 1, event)
    if end != len(tokens) - 1:
        raise ValueError(f"unparsed: {tokens[end:]}")
    return value


def _tokens(pattern: str) -> list[str]:
    tokens, at = [], 0
    while at < len(pattern.rstrip()):
        match = _TOKEN.match(pattern, at)
        if match is None:
            raise ValueError(f"unsupported syntax at {pattern[at : at + 40]!r}")
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def _condition(tokens: list[str], at: int, event: dict[str, Any]) -> tuple[bool, int]:
    values, operators = [], set()
    value, at = _term(tokens, at, event)
    values.append(value)
    while tokens[at] in ("&&", "||"):
        operators.add(tokens[at])
        value, at = _term(tokens, at + 1, event)
        values.append(value)
    if len(operators) > 1:
        raise ValueError("&& and || mixed without parentheses")
    return (any(values) if operators == {"||"} else all(values)), at


def _term(tokens: list[str], at: int, event: dict[str, Any]) -> tuple[bool, int]:
    if tokens[at] == "(":
        value, at = _condition(tokens, at + 1, event)
        if tokens[at] != ")":
            raise ValueError(f"expected ')' at {tokens[at:]}")
        return value, at + 1
    field = _field(event, tokens[at])
    operator = tokens[at + 1]
    if operator == "NOT EXISTS":
        return field is _MISSING, at + 2
    operand = tokens[at + 2]
    if field is _MISSING or not isinstance(field, str):
        return False, at + 3
    if operand.startswith("%"):
        if operator != "=":
            raise ValueError("a regex only with '='")
        return re.search(operand[1:-1], field) is not None, at + 3
    text = json.loads(operand)
    if "*" in text:
        raise ValueError("wildcards are not evaluated here")
    return (field == text) if operator == "=" else (field != text), at + 3


def _field(event: dict[str, Any], selector: str) -> Any:
    node: Any = event
    for key in selector.split(".")[1:]:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node
