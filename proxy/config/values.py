"""Value syntax of the config file: durations, percentages, sizes, names.

Each parser takes whatever YAML produced (a number or a string) and returns a
plain ``float``/``int`` in the base unit (seconds, percent, bytes), or raises
``ValueError`` with a message meant for an operator. The ``Annotated`` aliases
at the bottom attach the parsers to pydantic fields, so every field of a given
kind follows the same rule. YAML short forms live in ``proxy.config.shorthand``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, TypeGuard

from pydantic import AfterValidator, BeforeValidator

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# One or more "<number><unit>" parts: "250ms", "1.5s", "1m30s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h))+")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d+)?|\.\d+)")


def _plain_number(value: object, what: str) -> float | None:
    """``value`` as a finite float when it is a YAML number, None when it is a string.

    Booleans are refused explicitly: ``bool`` is an ``int`` subclass, and
    ``percent: yes`` silently meaning 1 % would be a nasty surprise.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean ({str(value).lower()})")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"expected {what}, got {value}")
        return number
    if isinstance(value, str):
        return None
    raise ValueError(f"expected {what}, got {_describe(value)}")


def _describe(value: object) -> str:
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def is_number(value: object) -> TypeGuard[float]:
    """A finite int or float, and not a bool (which is an int subclass)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def parse_duration(value: object) -> float:
    """Seconds from ``5``, ``0.25``, ``"250ms"``, ``"1.5s"``, ``"5m"``, ``"1h"`` or ``"1m30s"``."""
    what = "a duration such as 250ms, 1.5s, 5m or 1h"
    number = _plain_number(value, what)
    if number is None:
        text = str(value).strip()
        if _NUMBER.fullmatch(text):
            number = float(text)
        elif _DURATION_FULL.fullmatch(text):
            number = sum(
                float(amount) * _DURATION_UNITS[unit]
                for amount, unit in _DURATION_PART.findall(text)
            )
        elif text.startswith("-"):
            raise ValueError(f"must not be negative, got {text!r}")
        else:
            raise ValueError(f"expected {what}, got {text!r}")
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def parse_percent(value: object) -> float:
    """A percentage in 0..100 from ``10``, ``2.5``, ``"1%"`` or ``"12.5 %"``."""
    what = "a percentage such as 10 or 2.5%"
    number = _plain_number(value, what)
    if number is None:
        text = str(value).strip().removesuffix("%").strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"expected {what}, got {value!r}")
        number = float(text)
    if not 0 <= number <= 100:
        raise ValueError(f"must be between 0 and 100, got {value!r}")
    return number


def check_two_decimals(value: float) -> float:
    """Traffic percentages map to 10,000 buckets, so 0.01 % is the finest step."""
    if abs(round(value * 100) - value * 100) > 1e-6:
        raise ValueError(f"at most two decimals are allowed (one bucket is 0.01%), got {value}")
    return round(value, 2)


def parse_size(value: object) -> int:
    """Bytes from ``1024``, ``"512B"``, ``"16KiB"``, ``"1MiB"``, ``"10MB"``, ``"1GiB"``.

    KiB/MiB/GiB are powers of 1024, KB/MB/GB powers of 1000 (as in IEC 80000-13).
    """
    what = "a size such as 512B, 16KiB, 1MiB or 10MB"
    number = _plain_number(value, what)
    if number is None:
        text = str(value).strip()
        match = _SIZE.fullmatch(text)
        if match is None:
            if text.startswith("-"):
                raise ValueError(f"must not be negative, got {text!r}")
            raise ValueError(f"expected {what}, got {text!r}")
        amount, unit = match.groups()
        factor = _SIZE_UNITS.get((unit or "b").lower())
        if factor is None:
            raise ValueError(
                f"unknown size unit {unit!r} in {text!r}; use B, KB, MB, GB, KiB, MiB or GiB"
            )
        number = float(amount) * factor
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if number != int(number):
        raise ValueError(f"must be a whole number of bytes, got {value!r}")
    return int(number)


# --- Names ----------------------------------------------------------------------

# RFC 9110 token: what a method or a header name may consist of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_method(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid HTTP method")
    return value.upper()


def check_header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value.lower()


def _positive_duration(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _positive_size(value: int) -> int:
    if value <= 0:
        raise ValueError("must be greater than 0 bytes")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, >= 0."""
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), AfterValidator(_positive_duration)
]
"""Seconds, > 0: timeouts and intervals, where 0 would mean "never" or "spin"."""
Percent = Annotated[float, BeforeValidator(parse_percent)]
"""A percentage, 0..100."""
TrafficPercent = Annotated[
    float, BeforeValidator(parse_percent), AfterValidator(check_two_decimals)
]
"""A share of traffic, 0..100 in steps of 0.01 (one bucket out of 10,000)."""
Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, >= 0."""
PositiveSize = Annotated[int, BeforeValidator(parse_size), AfterValidator(_positive_size)]
"""Bytes, > 0."""
