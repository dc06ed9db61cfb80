"""argparse types: each checks one kind of value and says in one line what is wrong.

Cheap to import (stdlib and pipeline.config only): the parser is built before any command
runs, `--help` included.
"""

from __future__ import annotations

import argparse
import math
import re
import zoneinfo

from pipeline.config import (
    ENDPOINT_NAME_RE,
    NAME_RE,
    ROLE_ARN_RE,
    SCHEDULE_NAME_RE,
)


def _matching(pattern: re.Pattern, what: str):
    def parse(text: str) -> str:
        if not pattern.match(text):
            raise argparse.ArgumentTypeError(f"{text!r}: {what}")
        return text

    return parse


pipeline_name = _matching(NAME_RE, "pipeline names hold letters, digits and hyphens (at most 256)")
endpoint_name = _matching(
    ENDPOINT_NAME_RE, "endpoint names hold letters, digits and hyphens (at most 63)"
)
schedule_name = _matching(SCHEDULE_NAME_RE, "schedule names are 1-64 letters, digits and - _ .")
execution_display_name = _matching(
    re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}$"),
    "a display name holds letters, digits and hyphens (at most 82)",
)


def role_arn(text: str) -> str:
    if not ROLE_ARN_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    return text


def key_value(flag: str):
    example = "Team=vision" if flag == "--tag" else "MaxTuningJobs=4"

    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is not Name=Value (e.g. {flag} {example})")
        return key.strip(), value

    parse.__name__ = f"{flag} Name=Value"
    return parse


param = key_value("--param")


def tag(text: str) -> tuple[str, str]:
    key, value = key_value("--tag")(text)
    if key.lower().startswith("aws:"):
        raise argparse.ArgumentTypeError(f"tag key {key!r}: the aws: prefix is reserved by AWS")
    if len(key) > 128 or len(value) > 256:
        raise argparse.ArgumentTypeError(
            f"tag {key!r}: keys are at most 128 characters and values at most 256"
        )
    if not re.fullmatch(r"[\w .:/=+@-]*", key + value):
        raise argparse.ArgumentTypeError(
            f"tag {key!r}: use letters, digits, spaces and _ . : / = + - @ only"
        )
    return key, value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def whole_number(low: int, high: int | None = None, what: str = "whole number"):
    """An int in [low, high]; the message names what the number counts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bounds = f"{low}-{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} ({bounds})")
        return value

    parse.__name__ = what
    return parse


def timezone_name(text: str) -> str:
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        try:
            zoneinfo.ZoneInfo("UTC")
        except zoneinfo.ZoneInfoNotFoundError:
            return text  # no time zone database here to check against: let AWS judge
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
        ) from None
    return text


_CRON_HELP = (
    "EventBridge cron has 6 fields, cron(minutes hours day-of-month month day-of-week year), "
    "with ? in day-of-month or day-of-week, e.g. 'cron(0 3 * * ? *)' (03:00 daily), or use "
    "'rate(1 day)'"
)


def _rate(text: str, value: int, unit: str) -> str:
    singular = unit.rstrip("s")
    if singular not in ("minute", "hour", "day") or value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: rate takes a positive whole number and minute(s), hour(s) or "
            "day(s), e.g. 'rate(12 hours)'"
        )
    expected = singular if value == 1 else singular + "s"
    if unit != expected:
        raise argparse.ArgumentTypeError(
            f"{text!r}: EventBridge wants 'rate({value} {expected})' "
            "(singular unit for 1, plural otherwise)"
        )
    return f"rate({value} {expected})"


def schedule_expression(text: str) -> str:
    """The EventBridge expression for --cron: cron(...), wrapper optional, or rate(...).

    Only the classic mistakes are caught here (Unix cron's 5 fields, both or neither day
    field '?', a rate's unit); EventBridge Scheduler judges the fields themselves and its
    ValidationException comes back as one line.
    """
    expression = " ".join(text.split())
    rate = re.fullmatch(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", expression)
    if rate:
        return _rate(text, int(rate.group(1)), rate.group(2))
    wrapped = re.fullmatch(r"cron\((.*)\)", expression)
    body = (wrapped.group(1) if wrapped else expression).strip()
    fields = body.split(" ")
    if len(fields) == 5 and not wrapped:
        minute, hour, dom, month, dow = fields
        hint = f"; did you mean 'cron({minute} {hour} {dom} {month} ? *)'?" if dow == "*" else ""
        raise argparse.ArgumentTypeError(f"{text!r} has 5 fields (Unix cron): {_CRON_HELP}{hint}")
    if len(fields) != 6 or not body:
        raise argparse.ArgumentTypeError(f"{text!r}: {_CRON_HELP}")
    if (fields[2] == "?") == (fields[4] == "?"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: exactly one of day-of-month and day-of-week must be '?'; {_CRON_HELP}"
        )
    return f"cron({body})"
