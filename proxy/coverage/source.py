"""Reading an OpenAPI document from a file or URL: the I/O shell around ``operations``.

JSON or YAML, OpenAPI 3.0 or 3.1 (3.2 too), validated with
``openapi-spec-validator`` before its operations are read. A URL is fetched
with a deadline for the whole download and a size cap, so a slow or endless
answer cannot hang the CLI or the admin API. References to other documents
(``$ref: other.yaml#/...``) are refused rather than fetched: bundle such a
document first (``redocly bundle``, ``swagger-cli bundle``).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate
from openapi_spec_validator.exceptions import OpenAPISpecValidatorError
from openapi_spec_validator.validation.exceptions import ValidatorDetectError
from referencing.exceptions import Unresolvable

from proxy.coverage.operations import Document, DocumentError, read_document

FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024


class SourceError(Exception):
    """A document that cannot be read or is not OpenAPI 3.x; ``str`` is the one-line reason."""

    def __init__(self, source: str, message: str) -> None:
        first_line = (message.strip().splitlines() or ["?"])[0]
        super().__init__(f"{source}: {first_line[:300]}")


def load_document(source: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> Document:
    """The operations of the OpenAPI document at ``source`` (a path or an http(s) URL)."""
    return document_from_data(source, _decode(source, read_source(source, timeout)))


def document_from_data(source: str, data: Any) -> Document:
    """The operations of an already-parsed document (e.g. a fetched ``/openapi.json``),
    validated as ``load_document`` validates; ``source`` names it in errors."""
    data = check_document(source, data)
    try:
        return read_document(source, data)
    except DocumentError as error:
        raise SourceError(source, f"not an OpenAPI 3.x document: {error}") from None


def read_source(source: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes:
    if source.startswith(("http://", "https://")):
        return _fetch(source, timeout)
    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise SourceError(source, f"cannot read: larger than {MAX_DOCUMENT_BYTES} bytes")
        return path.read_bytes()
    except OSError as error:
        raise SourceError(source, f"cannot read: {error.strerror or error}") from None


def _fetch(url: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > MAX_DOCUMENT_BYTES:
                    raise SourceError(url, f"cannot read: larger than {MAX_DOCUMENT_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise SourceError(url, f"cannot read: not downloaded within {timeout:g} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        raise SourceError(url, f"cannot read: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise SourceError(url, f"cannot read: {error.reason}") from None
    except TimeoutError:
        raise SourceError(url, f"cannot read: no answer within {timeout:g} s") from None
    except (OSError, ValueError) as error:
        raise SourceError(url, f"cannot read: {error}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML whose timestamps stay strings, as they would be in JSON."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_document(source: str, raw: bytes) -> dict[str, Any]:
    """Bytes -> a validated OpenAPI 3.x document (JSON first, else YAML)."""
    return check_document(source, _decode(source, raw))


def check_document(source: str, data: Any) -> dict[str, Any]:
    """``data`` itself if it is a valid OpenAPI 3.x document, else a ``SourceError``."""
    try:
        data = _string_keys(data)
    except RecursionError:
        raise SourceError(source, "not an OpenAPI 3.x document: nested too deeply") from None
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise SourceError(source, f"not an OpenAPI 3.x document: the top level is {kind}")
    version = data.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        if "swagger" in data:
            found = f"Swagger {data['swagger']} (convert it to OpenAPI 3)"
        else:
            found = "no 'openapi' field" if version is None else f"openapi: {version!r}"
        raise SourceError(source, f"not an OpenAPI 3.x document: {found}")
    _refuse_external_refs(source, data)
    _validate(source, data)
    return data


def _decode(source: str, raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        message = f"not an OpenAPI 3.x document: neither JSON nor YAML: {reason}"
        raise SourceError(source, message) from None
    except RecursionError:
        raise SourceError(source, "not an OpenAPI 3.x document: nested too deeply") from None


def _string_keys(value: Any) -> Any:
    """YAML's ``200:`` is an int key; in OpenAPI (JSON) every key is a string."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _refs(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _refuse_external_refs(source: str, data: dict[str, Any]) -> None:
    for ref in _refs(data):
        if not isinstance(ref, str):
            raise SourceError(source, f"not an OpenAPI 3.x document: $ref {ref!r} is not a string")
        if not ref.startswith("#"):
            raise SourceError(
                source,
                f"not an OpenAPI 3.x document Turnout can read: $ref {ref!r} points outside "
                "the document (bundle it into one file first)",
            )


def _validate(source: str, data: dict[str, Any]) -> None:
    try:
        validate(data)
    except ValidatorDetectError:
        raise SourceError(
            source,
            f"not an OpenAPI 3.x document: OpenAPI {data.get('openapi')} is not a version "
            "the validator knows",
        ) from None
    except (ValidationError, OpenAPISpecValidatorError, Unresolvable) as error:
        message = getattr(error, "message", None) or str(error)
        raise SourceError(source, f"not an OpenAPI 3.x document: {message}") from None
    except RecursionError:
        raise SourceError(source, "not an OpenAPI 3.x document: nested too deeply") from None
