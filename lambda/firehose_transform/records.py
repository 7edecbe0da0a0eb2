"""Validation and normalization of one record against the dataset spec. Pure standard library.

The spec is the compact form of ``config/datasets/<name>.json`` that the CDK app puts in the
function's deployment package (``dataset_spec.json``), so there is exactly one definition of each
dataset.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

# Numbers and dates written as text are read in ASCII digits only, as the Glue job reads them:
# Python's own parsers would also take Arabic-Indic or full-width digits, and "1_000" as 1000.
_INT_RE = re.compile(r"^[+-]?\d+$", re.ASCII)
#: A number as text: JSON's grammar, plus a leading "+" and a point without digits on one side.
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_DECIMAL_TYPE_RE = re.compile(r"^decimal\((\d+),(\d+)\)$")
_INT_BOUNDS = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
#: Digits of the largest bigint: a whole number with more is refused before ``int()`` builds it.
_INT_DIGITS = 19
#: A dataset pattern's \d, \w and \s are ASCII, as in the Glue job's Java regex (the dataset file
#: allows only the syntax both read alike: ``datalake.dataset.pattern_portability_problem``).
PATTERN_FLAGS = re.ASCII
#: Event times outside this window are rejected: it catches epoch seconds sent as milliseconds
#: and keeps garbage out of the partition tree.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_EVENT_WINDOW = f"{MIN_EVENT_TIME:%Y-%m-%d}..{MAX_EVENT_TIME:%Y-%m-%d}"
#: Rejection reasons are kept short; a record with many problems lists the first ones.
MAX_ERRORS = 10


class Invalid(ValueError):
    """A value that does not fit its column; the message is the reason a person reads."""


class NestedInvalid(Invalid):
    """Fields inside a struct or an array's objects that do not fit: ``errors`` are the reasons,
    each led by its path within the value (``city: ...``, ``[1].qty: ...``), which the column's
    name then leads (``shipping.city: ...``, ``items[1].qty: ...``), as the job names them."""

    def __init__(self, errors: list[str]):
        self.errors = errors[:3]
        super().__init__("; ".join(self.errors))


#: Where in a payload a record-level reason points: `` at line 1 column 5``, `` (byte 3)``.
_POSITION_RE = re.compile(r" at line \d+ column \d+$| \(byte \d+\)$")
#: A field's path at the head of its reason: ``amount``, ``shipping.city``, ``items[1].qty``.
_FIELD_PATH_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*$")


def cause_of(reason: str) -> str:
    """What a reason is about, without the value it may quote: the field's path for a field's
    reason (``customer_email`` of ``customer_email: 'kim@...' does not match ...``; an element's
    index as ``[]``, so ``items[].qty``), and the record's own reasons, which quote no value,
    without the position they point at (``payload is not JSON: Expecting value``,
    ``internal error: KeyError``), so that the same fault counts as one.

    The function's log carries causes. The reasons, which quote a value of any column, PII
    included, go only into the rejection documents (the rejected table, tagged pii)."""
    head = reason.split(": ", 1)[0]
    if _FIELD_PATH_RE.match(head):
        return re.sub(r"\[\d+\]", "[]", head)
    return _POSITION_RE.sub("", reason)  # where in the payload varies; the kind of fault does not


def _short(value: Any) -> str:
    """A value as a reason shows it: its first 40 characters, quoted when it is text (a number may
    have a million digits)."""
    return repr(value[:40]) if isinstance(value, str) else str(value)[:40]


def format_timestamp(value: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, the form the raw zone stores (``2024-05-01T00:00:00.000Z``)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 with an offset (or ``Z``), or epoch milliseconds; returns an aware UTC datetime."""
    if isinstance(value, bool):
        raise Invalid("expected an ISO-8601 timestamp with offset or epoch milliseconds, got a boolean")
    if isinstance(value, (int, Decimal)) or (isinstance(value, str) and _INT_RE.match(value.strip())):
        try:
            millis = Decimal(str(value).strip())
            if millis and millis.adjusted() >= _INT_DIGITS:  # int() would build it first
                raise OverflowError
            parsed = datetime.fromtimestamp(int(millis) / 1000, tz=UTC)
        except (InvalidOperation, OverflowError, OSError, ValueError):
            raise Invalid(f"epoch milliseconds {_short(value)} out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise Invalid(f"{_short(text)} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            raise Invalid(f"{_short(text)} has no UTC offset; send e.g. 2024-05-01T09:00:00+09:00")
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first day a datetime holds
            raise Invalid(f"{_short(text)} is outside {_EVENT_WINDOW}") from None
    else:
        raise Invalid(f"expected an ISO-8601 timestamp or epoch milliseconds, got {_json_type(value)}")
    if not MIN_EVENT_TIME <= parsed < MAX_EVENT_TIME:
        raise Invalid(f"{format_timestamp(parsed)} is outside {_EVENT_WINDOW} (epoch seconds sent as ms?)")
    return parsed


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise Invalid("expected a number, got a boolean")
    if isinstance(value, float):  # only if a caller parsed floats; keep the shortest repr
        value = repr(value)
    if isinstance(value, (int, Decimal, str)):
        text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise Invalid(f"{_short(text)} is not a number") from None
        if not number.is_finite():
            raise Invalid(f"{_short(value)} is not a finite number")
        if value.__class__ is str and not _NUMBER_RE.match(text):
            raise Invalid(f"{_short(text)} is not a number")
        return number
    raise Invalid(f"expected a number, got {_json_type(value)}")


class Field(NamedTuple):
    name: str
    type: str
    required: bool
    check: Callable[[Any], Any]


class RecordValidator:
    """Validates and normalizes a decoded JSON object against a dataset spec.

    ``validate`` returns the normalized record (schema fields only, in schema order) and an
    empty list, or ``None`` and the reasons. It never raises for bad data.
    """

    def __init__(self, spec: dict[str, Any]):
        self.name: str = spec["name"]
        self.record_key: str = spec["record_key"]
        self.event_time: str = spec["event_time"]
        self._fields = [self._compile(c) for c in spec["columns"]]
        self._fast = compile_fast_path(spec["columns"], self._fields)

    def _compile(self, col: dict[str, Any]) -> Field:
        ctype: str = col["type"]
        checks: list[Callable[[Any], Any]] = []
        if ctype == "string":
            checks.append(_check_string(col))
        elif ctype in _INT_BOUNDS:
            checks.append(_check_int(ctype, col))
        elif ctype == "double":
            checks.append(_check_double(col))
        elif ctype == "boolean":
            checks.append(_check_boolean)
        elif ctype == "timestamp":
            checks.append(lambda v: format_timestamp(parse_timestamp(v)))
        elif ctype == "date":
            checks.append(_check_date)
        elif _DECIMAL_TYPE_RE.match(ctype):
            checks.append(_check_decimal(ctype, col))
        elif ctype in ("array", "struct"):
            children = [self._compile(c) for c in col["fields"]]
            checks.append(_check_array(children) if ctype == "array" else _check_struct(children))
        else:  # the dataset model rejects unknown types at synth; fail loudly if one slips through
            raise ValueError(f"column {col['name']}: unsupported type {ctype!r}")
        return Field(col["name"], ctype, bool(col.get("required")), checks[0])

    def validate(self, obj: Any) -> tuple[dict[str, Any] | None, list[str]]:
        if not isinstance(obj, dict):
            return None, [f"expected a JSON object, got {_json_type(obj)}"]
        fast = self._fast(obj)
        if fast is not None:
            return fast, []
        out, errors = _apply_fields(self._fields, obj)
        return (out, []) if not errors else (None, errors[:MAX_ERRORS])


def _apply_fields(fields: list[Field], obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    errors: list[str] = []
    get = obj.get
    for name, ftype, required, check in fields:
        value = get(name)
        if value is not None:
            if value.__class__ is str and ftype != "string" and not value.strip():
                value = None  # an empty string is no value for a number or a time
            else:
                try:
                    normalized = check(value)
                except NestedInvalid as exc:
                    errors += [f"{name}{'' if e[0] == '[' else '.'}{e}" for e in exc.errors]
                    continue
                except Invalid as exc:
                    errors.append(f"{name}: {exc}")
                    continue
                if normalized is None and required:
                    errors.append(f"{name}: required field is empty")
                out[name] = normalized
                continue
        if required:
            errors.append(f"{name}: required field is missing")
        out[name] = None
    return out, errors


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", list: "an array", dict: "an object", str: "a string"}.get(
        type(value), "a number"
    )


def _check_string(col: dict[str, Any]) -> Callable[[Any], Any]:
    enum = set(col["enum"]) if "enum" in col else None
    pattern = re.compile(col["pattern"], PATTERN_FLAGS) if "pattern" in col else None
    max_length = col.get("max_length")

    def check(value: Any) -> str | None:
        if value.__class__ is not str:
            raise Invalid(f"expected a string, got {_json_type(value)}")
        text = value.strip()
        if not text:
            return None
        if max_length is not None and len(text) > max_length:
            raise Invalid(f"longer than {max_length} characters")
        if enum is not None and text not in enum:
            raise Invalid(f"{_short(text)} is not one of {', '.join(sorted(enum))}")
        if pattern is not None and not pattern.fullmatch(text):
            raise Invalid(f"{_short(text)} does not match {pattern.pattern}")
        return text

    return check


def _check_range(value: Decimal, col: dict[str, Any]) -> None:
    if "min" in col and value < Decimal(str(col["min"])):
        raise Invalid(f"{_short(value)} is below the minimum {col['min']}")
    if "max" in col and value > Decimal(str(col["max"])):
        raise Invalid(f"{_short(value)} is above the maximum {col['max']}")


def _check_int(ctype: str, col: dict[str, Any]) -> Callable[[Any], Any]:
    low, high = _INT_BOUNDS[ctype]
    fast_low = max(low, math.ceil(col["min"])) if "min" in col else low
    fast_high = min(high, math.floor(col["max"])) if "max" in col else high

    def check(value: Any) -> int:
        if value.__class__ is int and fast_low <= value <= fast_high:  # most producers send ints
            return value  # type: ignore[no-any-return]
        number = _to_decimal(value)
        if number != number.to_integral_value():
            raise Invalid(f"{_short(number)} is not a whole number")
        if number and number.adjusted() >= _INT_DIGITS:
            # beyond every int type; int() would build it first (1e1000000: 41 s of CPU)
            raise Invalid(f"{_short(number)} does not fit {ctype}")
        result = int(number)
        if not low <= result <= high:
            raise Invalid(f"{result} does not fit {ctype}")
        _check_range(number, col)
        return result

    return check


def _check_double(col: dict[str, Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> float:
        number = _to_decimal(value)
        _check_range(number, col)
        result = float(number)
        if result in (float("inf"), float("-inf")):
            raise Invalid("does not fit a double")
        return result

    return check


def _check_decimal(ctype: str, col: dict[str, Any]) -> Callable[[Any], Any]:
    match = _DECIMAL_TYPE_RE.match(ctype)
    assert match is not None
    precision, scale = int(match.group(1)), int(match.group(2))
    quantum = Decimal(1).scaleb(-scale)
    # Fast path: a non-negative string already in canonical form ("12.30") needs no arithmetic
    # when the column has no maximum and no minimum above zero; nor does a whole number within
    # the precision ("2500", a JSON 2500, as won and yen are written), which gains its zeros.
    canonical, whole, zeros, bound = _decimal_forms(precision, scale)
    fast = bool(scale) and "max" not in col and float(col.get("min", 0)) <= 0

    def check(value: Any) -> str:
        if fast:
            # fullmatch: `$` also matches before a final newline, which kept "12.30\n" as it came
            if value.__class__ is str:
                if canonical.fullmatch(value):
                    return value  # type: ignore[no-any-return]
                if whole.fullmatch(value):
                    return value + zeros  # type: ignore[no-any-return]
            elif value.__class__ is int and 0 <= value < bound:
                return f"{value}{zeros}"
        number = _to_decimal(value)
        try:
            exact = number.quantize(quantum)
        except InvalidOperation:
            raise Invalid(f"{_short(number)} does not fit {ctype}") from None
        if exact != number:
            raise Invalid(f"{_short(number)} has more than {scale} decimal places")
        if len(exact.as_tuple().digits) > precision:
            raise Invalid(f"{_short(number)} does not fit {ctype}")
        _check_range(exact, col)
        # A string keeps the exact value through JSON; Spark and Athena read it as the decimal.
        return str(exact)

    return check


def _decimal_forms(precision: int, scale: int) -> tuple[re.Pattern[str], re.Pattern[str], str, int]:
    """What ``decimal(precision,scale)`` takes without arithmetic: its canonical text (``12.30``),
    a whole number's text (``2500``) and the zeros that make it canonical (``.00``), and the
    bound a whole number stays under (``10 ** (precision - scale)``)."""
    integer = rf"(0|[1-9]\d{{0,{max(precision - scale - 1, 0)}}})"
    return (
        re.compile(rf"{integer}\.\d{{{scale}}}", re.ASCII),
        re.compile(integer, re.ASCII),
        "." + "0" * scale,
        10 ** (precision - scale),
    )


def _check_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"expected true or false, got {_json_type(value)}")


def _check_date(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a date YYYY-MM-DD, got {_json_type(value)}")
    text = value.strip()
    if _DATE_RE.match(text):  # fromisoformat alone also takes 20240501 and 2024-W18-3
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise Invalid(f"{_short(value)} is not a date YYYY-MM-DD")


def _check_struct(children: list[Field]) -> Callable[[Any], Any]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"expected an object, got {_json_type(value)}")
        out, errors = _apply_fields(children, value)
        if errors:
            raise NestedInvalid(errors)
        return out

    return check


def _check_array(children: list[Field]) -> Callable[[Any], Any]:
    def check(value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise Invalid(f"expected an array, got {_json_type(value)}")
        items: list[dict[str, Any]] = []
        append = items.append
        for item in value:
            if item.__class__ is not dict:
                raise NestedInvalid([f"[{len(items)}]: expected an object, got {_json_type(item)}"])
            out, errors = _apply_fields(children, item)
            if errors:
                raise NestedInvalid([f"[{len(items)}].{e}" for e in errors])
            append(out)
        return items

    check.children = children  # type: ignore[attr-defined]  # read by the fast path
    return check


def loads(data: bytes) -> Any:
    """Decode a payload: UTF-8, then JSON with exact decimals. Raises ``Invalid`` with the reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"payload is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise Invalid("payload is empty")
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it; the decoder alone would not say why
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except Invalid:  # NaN or Infinity (_reject_constant)
        raise
    except ValueError:  # int() of a literal over Python's 4,300-digit limit
        raise Invalid(
            f"payload holds a whole number of more than {sys.get_int_max_str_digits()} digits"
        ) from None
    except RecursionError:
        raise Invalid("payload nests too deeply") from None


def _reject_constant(name: str) -> Any:
    raise Invalid(f"payload is not JSON: {name} is not allowed")


#: One decoder for every payload: ``json.loads`` with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


# --- fast path ------------------------------------------------------------------------------------
# Most records are valid and already normalized. For them a function generated from the spec
# checks every field inline (no per-field calls) and returns the output; on the first deviation it
# returns None and the general path above re-checks the record, normalizes it or says why it fails.
# The general path alone defines the behaviour; the tests run both on every input.


def compile_fast_path(
    columns: list[dict[str, Any]], fields: list[Field]
) -> Callable[[Any], dict[str, Any] | None]:
    namespace: dict[str, Any] = {"Invalid": Invalid}
    body = ["def fast(obj):", *_fast_block(columns, fields, "obj", "v", ind="    ", ns=namespace)]
    body.append("    return " + _fast_dict(columns, "v"))
    exec("\n".join(body), namespace)
    return namespace["fast"]  # type: ignore[no-any-return]


def _fast_dict(columns: list[dict[str, Any]], var: str) -> str:
    return "{" + ", ".join(f"{c['name']!r}: {var}{i}" for i, c in enumerate(columns)) + "}"


def _fast_block(
    columns: list[dict[str, Any]], fields: list[Field], source: str, var: str, *, ind: str, ns: dict[str, Any]
) -> list[str]:
    """Lines that read every field of ``source`` into ``<var><i>`` or ``return None``."""
    lines = [f"{ind}{var}get = {source}.get"]
    for i, (col, fld) in enumerate(zip(columns, fields, strict=True)):
        v = f"{var}{i}"
        key = f"{var}_{i}"  # namespace prefix of this field's constants
        lines.append(f"{ind}{v} = {var}get({col['name']!r})")
        conds: list[str] = []
        after: list[str] = []
        ctype = col["type"]
        if ctype == "string":
            conds = [f"{v}.__class__ is str", v, f"{v} == {v}.strip()"]
            if "max_length" in col:
                conds.append(f"len({v}) <= {int(col['max_length'])}")
            if "enum" in col:
                ns[f"E{key}"] = frozenset(col["enum"])
                conds.append(f"{v} in E{key}")
            if "pattern" in col:
                ns[f"P{key}"] = re.compile(col["pattern"], PATTERN_FLAGS)
                conds.append(f"P{key}.fullmatch({v}) is not None")
        elif ctype in _INT_BOUNDS:
            low, high = _INT_BOUNDS[ctype]
            low = max(low, math.ceil(col["min"])) if "min" in col else low
            high = min(high, math.floor(col["max"])) if "max" in col else high
            conds = [f"{v}.__class__ is int", f"{low} <= {v} <= {high}"]
        elif (
            (match := _DECIMAL_TYPE_RE.match(ctype))
            and int(match.group(2)) > 0
            and "max" not in col
            and float(col.get("min", 0)) <= 0
        ):
            precision, scale = int(match.group(1)), int(match.group(2))
            ns[f"C{key}"], ns[f"W{key}"], ns[f"Z{key}"], ns[f"B{key}"] = _decimal_forms(precision, scale)
            # canonical text as it is; a whole number (text or JSON) with its zeros added
            after = [
                f"if {v}.__class__ is str:",
                f"    if C{key}.fullmatch({v}) is None:",
                f"        if W{key}.fullmatch({v}) is None: return None",
                f"        {v} = {v} + Z{key}",
                f"elif {v}.__class__ is int and 0 <= {v} < B{key}: {v} = f'{{{v}}}{{Z{key}}}'",
                "else: return None",
            ]
        elif ctype == "array":
            # The elements' checks inline in the loop: no call per element.
            conds = [f"{v}.__class__ is list"]
            element = f"{v}e"
            after = [
                f"{v}l = []",
                f"for {element} in {v}:",
                f"    if {element}.__class__ is not dict: return None",
            ]
            after += [
                line[len(ind) :]
                for line in _fast_block(
                    col["fields"], _children(fld), element, f"{v}x", ind=ind + "    ", ns=ns
                )
            ]
            after += [f"    {v}l.append({_fast_dict(col['fields'], f'{v}x')})", f"{v} = {v}l"]
        else:  # timestamps, dates, doubles, booleans, structs: the general check, inline
            ns[f"K{key}"] = fld.check
            after = [f"try: {v} = K{key}({v})", "except Invalid: return None"]
            if fld.required:
                after.append(f"if {v} is None: return None")
        # An absent optional field stays None; an absent required one needs the general path.
        if fld.required:
            lines.append(f"{ind}if {v} is None: return None")
            inner = ind
        else:
            lines.append(f"{ind}if {v} is not None:")
            inner = ind + "    "
        if conds:
            lines.append(f"{inner}if not ({' and '.join(conds)}): return None")
        lines.extend(inner + line for line in after)  # every type has a condition or a check
    return lines


def _children(fld: Field) -> list[Field]:
    children = getattr(fld.check, "children", None)
    if children is None:
        raise ValueError(f"{fld.name}: no child fields for the fast path")
    return children  # type: ignore[no-any-return]
