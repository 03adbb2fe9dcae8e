"""Input validation the way the SSM service does it.

* Constraint validation is driven by the service model that botocore ships (the same model the
  "AWS Systems Manager API Reference" pages are generated from): required members, integer
  ranges, string lengths, list sizes, enums and patterns.  Messages follow the AWS format
  ``1 validation error detected: Value 'x' at 'member' failed to satisfy constraint: ...``.
* Semantic checks that the model cannot express (schedule expressions, Cutoff < Duration,
  ApproveAfterDays on Ubuntu/Debian) live in ``ssm_ext``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from botocore.model import OperationModel, Shape

_PATTERN_CACHE: dict[str, re.Pattern[str] | None] = {}


def _compile(pattern: str) -> re.Pattern[str] | None:
    if pattern not in _PATTERN_CACHE:
        translated = (
            pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", r"\s")
        )
        try:
            _PATTERN_CACHE[pattern] = re.compile(translated, re.DOTALL)
        except re.error:
            _PATTERN_CACHE[pattern] = None
    return _PATTERN_CACHE[pattern]


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:] if name else name


def _fmt_value(value: Any, shape: Shape) -> str:
    if shape.metadata.get("sensitive"):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _check(value: Any, shape: Shape, path: str, errors: list[str]) -> None:
    if value is None:
        return
    meta = shape.metadata
    type_name = shape.type_name

    def fail(constraint: str) -> None:
        shown = _fmt_value(value, shape)
        if meta.get("sensitive"):
            errors.append(f"Value at '{path}' failed to satisfy constraint: {constraint}")
        else:
            errors.append(
                f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"
            )

    if type_name == "structure" and isinstance(value, dict):
        for name, member_shape in shape.members.items():
            member_path = f"{path}.{_lower_camel(name)}" if path else _lower_camel(name)
            if name in shape.required_members and value.get(name) is None:
                errors.append(
                    f"Value null at '{member_path}' failed to satisfy constraint: "
                    "Member must not be null"
                )
                continue
            _check(value.get(name), member_shape, member_path, errors)
    elif type_name == "list" and isinstance(value, list):
        if "min" in meta and len(value) < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
        for index, item in enumerate(value, start=1):
            _check(item, shape.member, f"{path}.{index}.member", errors)
    elif type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
        for key, item in value.items():
            _check(item, shape.value, f"{path}.{key}", errors)
    elif type_name in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
        if "min" in meta and value < meta["min"]:
            fail(f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            fail(f"Member must have value less than or equal to {meta['max']}")
    elif type_name == "string" and isinstance(value, str):
        if "min" in meta and len(value) < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
        if shape.enum and value not in shape.enum:
            fail("Member must satisfy enum value set: [" + ", ".join(shape.enum) + "]")
        pattern = meta.get("pattern")
        if pattern:
            compiled = _compile(pattern)
            if compiled is not None and compiled.search(value) is None:
                fail(f"Member must satisfy regular expression pattern: {pattern}")


def validate_against_model(operation: OperationModel, params: dict[str, Any]) -> str | None:
    """Returns the AWS-style ValidationException message, or None when the input is valid."""
    shape = operation.input_shape
    if shape is None:
        return None
    errors: list[str] = []
    _check(params, shape, "", errors)
    if not errors:
        return None
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} detected: " + "; ".join(errors)


# --- schedule expressions (SSM maintenance windows: cron / rate / at) ------------------------

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def _cron_field_ok(field: str, low: int, high: int, names: str | None, extra: str = "") -> bool:
    if field == "*":
        return True
    for part in field.split(","):
        step_split = part.split("/")
        if len(step_split) > 2:
            return False
        base = step_split[0]
        if len(step_split) == 2 and not (step_split[1].isdigit() and int(step_split[1]) > 0):
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2:
            return False
        for bound in bounds:
            if extra and re.fullmatch(extra, bound):
                continue
            if bound.isdigit():
                if not low <= int(bound) <= high:
                    return False
            elif names and re.fullmatch(names, bound.upper()):
                continue
            else:
                return False
    return True


def _expand(field: str, low: int, high: int) -> set[int]:
    """The values a plain numeric cron field (``*``, lists, ranges, steps) selects."""
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(b) for b in base.split("-"))
        else:
            first = int(base)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


# "Cron expressions that lead to rates faster than five (5) minute aren't supported."
# (Reference: Cron and rate expressions for Systems Manager, general information)
MIN_INTERVAL_SECONDS = 300


def schedule_error(expression: str) -> str | None:
    """Returns a reason when ``expression`` is not a valid SSM schedule expression."""
    expr = expression.strip()
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expr)
    if match:
        value, unit = int(match.group(1)), match.group(2)
        if value < 1:
            return "rate value must be a positive integer"
        if value == 1 and unit.endswith("s") or value > 1 and not unit.endswith("s"):
            return "rate unit must be singular for 1 and plural otherwise"
        if unit.startswith("minute") and value * 60 < MIN_INTERVAL_SECONDS:
            # the 5-minute floor of cron applied to rate too (README: verified only in the emulator)
            return "rates faster than five minutes aren't supported"
        return None
    match = re.fullmatch(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)", expr)
    if match:
        try:
            datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return "at() must contain a valid date and time"
        return None
    match = re.fullmatch(r"cron\((.*)\)", expr)
    if not match:
        return "expression must be cron(...), rate(...) or at(...)"
    fields = match.group(1).split()
    seconds = "0"
    if len(fields) == 7:
        # "Unlike State Manager associations, maintenance windows support all cron and rate
        # expressions. This includes support for values in the seconds field", e.g.
        # cron(24 30 09 ? * * *) runs at 9:30:24 AM (Reference: Cron and rate expressions for
        # Systems Manager, maintenance windows section). Seconds: 0-59 with , - * /.
        seconds = fields[0]
        if not _cron_field_ok(seconds, 0, 59, None):
            return f"invalid seconds field '{seconds}'"
        fields = fields[1:]
    if len(fields) != 6:
        return "cron expression must have 6 fields: minutes hours day-of-month month day-of-week year"
    minutes, hours, dom, month, dow, year = fields
    if not _cron_field_ok(minutes, 0, 59, None):
        return f"invalid minutes field '{minutes}'"
    if not _cron_field_ok(hours, 0, 23, None):
        return f"invalid hours field '{hours}'"
    if dom != "?" and not _cron_field_ok(dom, 1, 31, None, r"L|LW|\d{1,2}W"):
        return f"invalid day-of-month field '{dom}'"
    if not _cron_field_ok(month, 1, 12, _MONTHS):
        return f"invalid month field '{month}'"
    if dow != "?":
        hash_match = re.fullmatch(r"([A-Za-z]{3}|[1-7])#([1-5])", dow)
        last_match = re.fullmatch(r"([A-Za-z]{3}|[1-7])L", dow)
        if hash_match or last_match:
            day = (hash_match or last_match).group(1)  # type: ignore[union-attr]
            if not (day.isdigit() or re.fullmatch(_DAYS, day.upper())):
                return f"invalid day-of-week field '{dow}'"
        elif not _cron_field_ok(dow, 1, 7, _DAYS, r"L"):
            return f"invalid day-of-week field '{dow}'"
    if (dom == "?") == (dow == "?"):
        return "exactly one of day-of-month and day-of-week must be '?'"
    if not _cron_field_ok(year, 1970, 2199, None):
        return f"invalid year field '{year}'"
    try:
        moments = sorted(
            h * 3600 + m * 60 + sec
            for h in _expand(hours, 0, 23)
            for m in _expand(minutes, 0, 59)
            for sec in _expand(seconds, 0, 59)
        )
    except ValueError:
        return None
    if any(b - a < MIN_INTERVAL_SECONDS for a, b in zip(moments, moments[1:])):
        return "cron expressions that lead to rates faster than five minutes aren't supported"
    return None
