"""A pydantic validation error, said the way an operator reads a config file.

Pure: ``loader`` finds where in the file an error is; this says what is wrong
there, in words ("expected a list, got a mapping", "unknown key 'precent' (did
you mean 'percent'?)", "write it in quotes") rather than pydantic's.
"""

from __future__ import annotations

import difflib
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from proxy.config.models import Config


def operator_message(error: ErrorDetails, written: str | None) -> str:
    kind = error["type"]
    given: Any = error.get("input")
    if kind == "missing":
        return "required key missing"
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, _keys_at(error["loc"][:-1]), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = _describe(given, written)
    if kind.startswith(("dict_", "model_")):
        return f"expected a mapping, got {got}"
    if kind.startswith(("list_", "tuple_")) and kind.endswith("_type"):
        return f"expected a list, got {got}"
    if kind.startswith("string_type"):
        if isinstance(given, bool | int | float) and written is not None:
            return f'expected a string, got {got}; write it in quotes: "{written}"'
        return f"expected a string, got {got}"
    if kind == "too_short":
        return f"needs at least {error.get('ctx', {}).get('min_length', 1)} item(s)"
    if kind == "too_long":
        return f"has more than {error.get('ctx', {}).get('max_length', 1)} item(s)"
    if kind.startswith("int_"):
        return f"expected a whole number, got {got}"
    if kind.startswith("float_"):
        return f"expected a number, got {got}"
    if kind.startswith("bool_"):
        return f"expected true or false, got {got}"
    message = str(error["msg"])
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    elif message[:1].isupper() and not message[:2].isupper():
        message = message[0].lower() + message[1:]
    if isinstance(given, dict | list) or given is None:
        return message
    return f"{message}, got {got}"


def _describe(value: Any, written: str | None) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{written or str(value).lower()} (read as a boolean by YAML)"
    return repr(value)


def _keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the mapping at pydantic ``loc`` (for "did you mean" hints)."""
    kind: Any = Config
    for part in (*loc, None):
        while True:  # strip Annotated[...] and `X | None`
            args = [a for a in get_args(kind) if a is not type(None)]
            if get_origin(kind) is Annotated or (get_origin(kind) in (Union, UnionType)):
                kind = args[0]
            else:
                break
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if part is None:
                return list(kind.model_fields)
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (list, tuple) and isinstance(part, int):
            kind = get_args(kind)[0]
        elif get_origin(kind) is dict and part is not None:
            kind = get_args(kind)[1]
        else:
            return []
    return []
