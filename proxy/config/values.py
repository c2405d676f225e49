"""Value syntax of the config file: units and short forms.

Durations, percentages and byte sizes: each parser takes whatever YAML produced
(a number or a string) and returns a plain ``float``/``int`` in the base unit
(seconds, percent, bytes). The short forms (``":8080"``, ``- cookie: sid``, a
fallback trigger, a route pattern) are parsed or checked here too. All raise
``ValueError`` with a message meant for an operator. The ``Annotated`` aliases
at the bottom attach the unit parsers to pydantic fields, so every field of a
given kind follows the same rule.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

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


# --- Short YAML forms (listen addresses, sticky sources, routes) ---------------

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


def parse_host_port(text: str) -> dict[str, Any]:
    """``"[::1]:8080"`` -> ``{"host": "::1", "port": 8080}``; an empty host is 0.0.0.0."""
    usage = f"expected HOST:PORT such as 0.0.0.0:8080, :8080 or [::1]:8080, got {text!r}"
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError(usage)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(usage)
        host = host or "0.0.0.0"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port!r}")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"{host!r} is not a valid host")
    return {"host": host, "port": int(port)}


def sticky_source_dict(value: object) -> dict[str, Any]:
    """A sticky source in any YAML form -> the model's dict form (``kind``, ``name``, ...)."""
    if isinstance(value, str):
        if value == "client_ip":
            return {"kind": "client_ip"}
        if value in _STICKY_EXAMPLES:
            raise ValueError(f"{value!r} needs a value, e.g. `{_STICKY_EXAMPLES[value]}`")
        raise ValueError(_unknown_sticky(value))
    if not isinstance(value, dict):
        raise ValueError(f"expected a sticky source such as `client_ip`, got {value!r}")
    if "kind" in value:
        return value
    if len(value) != 1:
        keys = ", ".join(str(k) for k in value) or "none"
        raise ValueError(
            f"a sticky source is a single key (cookie, header or jwt_claim), got: {keys}"
        )
    ((kind, arg),) = value.items()
    if kind in ("cookie", "header"):
        if not isinstance(arg, str) or not arg:
            raise ValueError(f"{kind}: expected a {kind} name, got {arg!r}")
        return {"kind": kind, "name": arg}
    if kind == "jwt_claim":
        return _jwt_claim(arg)
    if kind == "client_ip":
        raise ValueError("client_ip takes no value: write `- client_ip`")
    raise ValueError(_unknown_sticky(str(kind)))


_STICKY_EXAMPLES = {
    "cookie": "- cookie: session_id",
    "header": "- header: x-user-id",
    "jwt_claim": "- jwt_claim: {cookie: access_token, claim: sub}",
}


def _unknown_sticky(kind: str) -> str:
    return f"unknown sticky source {kind!r}; expected one of {', '.join(STICKY_KINDS)}"


def _jwt_claim(arg: object) -> dict[str, Any]:
    if not isinstance(arg, dict):
        raise ValueError(
            f"jwt_claim: expected a mapping such as {{cookie: access_token, claim: sub}}, "
            f"got {arg!r}"
        )
    unknown = sorted(str(k) for k in arg if k not in ("cookie", "header", "claim"))
    if unknown:
        raise ValueError(
            f"jwt_claim: unknown key {', '.join(unknown)} (allowed: cookie, header, claim)"
        )
    places = [k for k in ("cookie", "header") if k in arg]
    if len(places) != 1:
        raise ValueError("jwt_claim: give exactly one of `cookie: NAME` or `header: NAME`")
    place = places[0]
    name, claim = arg[place], arg.get("claim", "sub")
    if not isinstance(name, str) or not name:
        raise ValueError(f"jwt_claim.{place}: expected a {place} name, got {name!r}")
    if not isinstance(claim, str) or not claim:
        raise ValueError(f"jwt_claim.claim: expected a claim name, got {claim!r}")
    return {"kind": "jwt_claim", "name": name, "claim": claim, "jwt_in": place}


FALLBACK_KINDS = ("connect_error", "timeout", "reset")
STICKY_KINDS = ("jwt_claim", "cookie", "header", "client_ip")


def parse_fallback_trigger(value: object) -> str | int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 500 <= value <= 599:
            return value
        raise ValueError(f"status {value} is not a 5xx code (500..599)")
    if isinstance(value, str) and value in FALLBACK_KINDS:
        return value
    raise ValueError(
        f"expected one of {', '.join(FALLBACK_KINDS)} or a 5xx status code, got {value!r}"
    )


def check_route_path(path: str) -> str:
    """A path pattern: starts with ``/``; ``*`` and ``**`` only as whole segments."""
    if not path.startswith("/"):
        raise ValueError(f"must start with '/', got {path!r}")
    if "?" in path or "#" in path:
        raise ValueError(f"must not contain a query or fragment, got {path!r}")
    for segment in path[1:].split("/"):
        if "*" in segment and segment not in ("*", "**"):
            raise ValueError(
                f"'*' and '**' must be a whole path segment, got {segment!r} in {path!r}"
            )
    return path


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
