"""The operations of one OpenAPI 3.x document, as the client sends them (pure).

An operation's ``path`` is the server's base path joined with the path
template: ``servers: [{url: https://api.example/v2}]`` and ``/users/{id}``
give ``/v2/users/{id}``. The base path comes from the most specific
``servers`` list (operation, then path item, then document) and its first
entry, with server variables replaced by their defaults; a document without
``servers`` (or with ``/``) has none. Matching two documents works on these
full paths, so one that writes ``/api`` in ``servers`` and one that writes it
in every path agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAMETER = re.compile(r"\{[^/{}]*\}")


class DocumentError(ValueError):
    """The document is not something operations can be read from; the message says why."""


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    """Upper case: ``GET``."""
    path: str
    """Base path plus template, parameters as written: ``/api/users/{user_id}``."""
    operation_id: str | None = None
    summary: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What two documents match on: the method and the path, parameter names ignored."""
        return self.method, template_key(self.path)


@dataclass(frozen=True, slots=True)
class Document:
    """What a report says about one document besides its operations."""

    source: str
    version: str
    title: str
    operations: tuple[Operation, ...]


def template_key(path: str) -> str:
    """``/users/{user_id}`` -> ``/users/{}``: the same for every parameter name."""
    return _PARAMETER.sub("{}", path)


def read_document(source: str, data: Any) -> Document:
    """A validated OpenAPI 3.x document's operations, in document order."""
    if not isinstance(data, Mapping):
        raise DocumentError(f"expected a mapping at the top, got {type(data).__name__}")
    info = data.get("info")
    title = info.get("title") if isinstance(info, Mapping) else None
    base = base_path(data.get("servers"))
    found: list[Operation] = []
    paths = data.get("paths") or {}
    if not isinstance(paths, Mapping):
        raise DocumentError("'paths' is not a mapping")
    for template, raw_item in paths.items():
        item = _resolve(data, raw_item, f"paths.{template}")
        item_base = base_path(item.get("servers"), base)
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, Mapping):
                continue
            op_base = base_path(operation.get("servers"), item_base)
            found.append(
                Operation(
                    method=method.upper(),
                    path=join_path(op_base, str(template)),
                    operation_id=_text(operation.get("operationId")),
                    summary=_text(operation.get("summary")),
                )
            )
    return Document(source, str(data.get("openapi", "?")), _text(title) or "", tuple(found))


def base_path(servers: Any, inherited: str = "") -> str:
    """The path part of the first server URL (``""`` for none or ``/``), else ``inherited``."""
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        return inherited
    url = servers[0].get("url")
    if not isinstance(url, str):
        return inherited
    variables = servers[0].get("variables")
    if isinstance(variables, Mapping):
        for name, variable in variables.items():
            default = variable.get("default") if isinstance(variable, Mapping) else None
            url = url.replace("{" + str(name) + "}", str(default if default is not None else ""))
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    path = "/" + path.strip("/") if path.strip("/") else ""
    return path


def join_path(base: str, template: str) -> str:
    """``/api`` + ``/users`` -> ``/api/users``; no base leaves the template as it is."""
    if not template.startswith("/"):
        template = "/" + template
    return base + template if base else template


def _resolve(root: Mapping[str, Any], item: Any, where: str) -> Mapping[str, Any]:
    """A path item, following a local ``$ref`` (``#/components/pathItems/...``)."""
    seen: set[str] = set()
    while isinstance(item, Mapping) and "$ref" in item:
        ref = item["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise DocumentError(f"{where}: only local $ref path items are supported, got {ref!r}")
        if ref in seen:
            raise DocumentError(f"{where}: $ref cycle through {ref!r}")
        seen.add(ref)
        siblings = {key: value for key, value in item.items() if key != "$ref"}
        target = _pointer(root, ref, where)
        item = {**target, **siblings} if isinstance(target, Mapping) else target
    if not isinstance(item, Mapping):
        raise DocumentError(f"{where}: a path item must be a mapping")
    return item


def _pointer(root: Mapping[str, Any], ref: str, where: str) -> Any:
    node: Any = root
    for raw in ref[2:].split("/"):
        step = unquote(raw).replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or step not in node:
            raise DocumentError(f"{where}: $ref {ref!r} points at nothing")
        node = node[step]
    return node


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
