"""YAML short forms of the config file, expanded into the models' dict forms.

``":8080"`` for a listen address, ``- cookie: sid`` for a sticky source, a
fallback trigger written as a kind or a status code, a route pattern. All raise
``ValueError`` with a message meant for an operator.
"""

from __future__ import annotations

from typing import Any


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
# Besides 5xx: what a new backend answers for an operation it has not built yet.
NOT_BUILT_STATUSES = (404, 405)
STICKY_KINDS = ("jwt_claim", "cookie", "header", "client_ip")


def parse_fallback_trigger(value: object) -> str | int:
    """A transport failure kind, a 5xx status, or 404/405 (501 is a 5xx already).

    404 and 405 are what a backend says for a route it does not have: during a
    migration, an operation the new backend has not implemented yet.
    """
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 500 <= value <= 599 or value in NOT_BUILT_STATUSES:
            return value
        raise ValueError(
            f"status {value} cannot trigger a fallback: expected a 5xx code (500..599), 404 or 405"
        )
    if isinstance(value, str) and value in FALLBACK_KINDS:
        return value
    raise ValueError(
        f"expected one of {', '.join(FALLBACK_KINDS)}, a 5xx status code, 404 or 405, "
        f"got {value!r}"
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
