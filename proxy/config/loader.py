"""YAML text -> ``Config``, with every error reported as ``FILE:LINE: key.path: message``.

The file is *composed* (not loaded) with PyYAML's safe loader, so that every
value keeps the line it came from. Walking the node tree builds the plain
Python data for pydantic and, on the way, a map from key paths to lines; it
also catches what PyYAML's constructor would hide (a key written twice silently
keeps its last value). Pydantic then validates the data in one pass, which
collects all errors; each error's ``loc`` is mapped back to a path that exists
in the file and to its line. Checks that span the file (routes pointing at
flags, unique route names) run on the raw data, so they are reported even when
other parts of the file are invalid.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from proxy.config.inactive import inactive_keys
from proxy.config.messages import operator_message
from proxy.config.models import Config, reference_problems

# Only the safe loaders, only to compose nodes: no tag can run code.
_Loader: type[yaml.CSafeLoader] | type[yaml.SafeLoader] = (
    yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
)

ROOT = "(root)"
"""The key path of problems with the file as a whole (unreadable, empty, not a mapping)."""
_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-.]+")
_LOC_ALIASES = {"[key]"}  # pydantic's marker for "the dict key itself" in a loc


class ConfigIssue(NamedTuple):
    """One problem in a config file; ``line`` is 1-based (0 when there is no line)."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """An invalid config; ``str()`` lists every issue, one per line, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = sorted(issues, key=lambda issue: issue.line)
        super().__init__("\n".join(str(issue) for issue in self.issues))


Loc = tuple[str | int, ...]


class _Source:
    """The raw data of one file plus, per key path, the line it starts on."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[Loc, int] = {}
        self.scalars: dict[Loc, str] = {}  # scalars as written, for messages
        self.issues: list[ConfigIssue] = []
        self._nodes = 0
        self._constructor = yaml.constructor.SafeConstructor()

    def issue(self, loc: Loc, message: str, line: int | None = None) -> None:
        self.issues.append(
            ConfigIssue(self.filename, line or self.line_of(loc), format_path(loc), message)
        )

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor present in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def build(self, node: yaml.Node, loc: Loc, stack: tuple[int, ...] = ()) -> Any:
        """Plain Python data from ``node``; records lines and duplicate keys on the way.

        Lines are only recorded where none is yet, so that a key written in the
        mapping itself keeps its line over one merged in with ``<<``.
        """
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _Abort(node, loc, f"document too large (over {_MAX_NODES} values)")
        if id(node) in stack:
            raise _Abort(node, loc, "recursive alias: a value contains itself")
        stack = (*stack, id(node))
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise _Abort(node, loc, f"unsupported YAML tag {node.tag!r}")
            return self._mapping(node, loc, stack)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise _Abort(node, loc, f"unsupported YAML tag {node.tag!r}")
            return [self.build(item, (*loc, i), stack) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.scalars.setdefault(loc, node.value)
        try:
            return self._constructor.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            raise _Abort(node, loc, exc.problem or str(exc)) from None

    def _mapping(self, node: yaml.MappingNode, loc: Loc, stack: tuple[int, ...]) -> dict[str, Any]:
        own: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Abort(key_node, loc, "a key must be a plain value, not a list or mapping")
            # Keys are taken as written: YAML 1.1 would turn `on:` (fallback.on) into True.
            key = key_node.value
            child = (*loc, key)
            if key in first_line:
                self.issue(child, f"duplicate key {key!r} (first on line {first_line[key]})", line)
                continue
            first_line[key] = line
            self.lines.setdefault(child, line)
            own[key] = self.build(value_node, child, stack)
        merged: dict[str, Any] = {}
        for value_node in merges:  # `<<: *defaults`: keys written here win
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in reversed(items):
                data = self.build(item, loc, stack)
                if not isinstance(data, dict):
                    raise _Abort(item, loc, "`<<` must merge a mapping or a list of mappings")
                merged.update(data)
        return {**merged, **own}


class _Abort(Exception):
    """A problem that stops reading the YAML (no data can be built past it)."""

    def __init__(self, node: yaml.Node, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.loc = loc
        self.message = message


def format_path(loc: Loc) -> str:
    """``("flags", "user-api", "percent")`` -> ``flags.user-api.percent``; ints are indexes."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or ROOT


def parse_config(
    text: str, filename: str = "<config>", lines: dict[Loc, int] | None = None
) -> Config:
    """Validate YAML ``text``; raise ``ConfigError`` listing every problem (``lines``, when
    given, receives the line of every key path)."""
    source = _Source(filename)
    data = _compose(text, source)
    if data is None:
        raise ConfigError(source.issues)
    _check_references(data, source)
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"skip_reference_check": True})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc, message = _explain(error, data, source)
            source.issue(loc, message)
    if source.issues or config is None:
        raise ConfigError(source.issues)
    if lines is not None:
        lines.update(source.lines)
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; unreadable files raise ``ConfigError`` too."""
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue(filename, 0, ROOT, f"cannot read file: {reason}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(filename, line, ROOT, "file is not UTF-8 text")]) from None
    return parse_config(text, filename)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with the path it came from and the sha256 of its text."""

    config: Config
    hash: str
    path: str
    warnings: tuple[ConfigIssue, ...] = ()  # keys accepted but not active yet (inactive.py)


def read_config(path: str) -> LoadedConfig:
    """Load and validate a config file, reading it once; raises ``ConfigError``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        load_config(path)  # raises the well-worded ConfigError for this file
        raise
    lines: dict[Loc, int] = {}
    config = parse_config(text, path, lines)
    warnings = [
        ConfigIssue(path, lines.get(at, 0), format_path(at), m) for at, m in inactive_keys(config)
    ]
    return LoadedConfig(config, config_hash(text), path, tuple(sorted(warnings)))


def summarize(config: Config) -> str:
    """The one-line summary ``turnout check`` prints for a valid config."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    return (
        f"ok: 2 backends, {count(len(config.flags), 'flag')}, "
        f"{count(len(config.routes), 'route')}, "
        f"listen {config.listen}, admin {config.admin.listen}"
    )


def config_hash(text: str) -> str:
    """sha256 hex digest of the raw config text, as served by ``GET /config``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _compose(text: str, source: _Source) -> dict[str, Any] | None:
    """The file's top-level mapping, or None (with an issue recorded) when there is none."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            where = f"{exc.context} on line {exc.context_mark.line + 1}"
            # PyYAML splits some messages: "expected a single document", "but found another".
            problem = (
                f"{where}, {problem}" if problem.startswith("but ") else f"{problem} ({where})"
            )
        source.issue((), f"YAML syntax error: {problem}", line)
        return None
    except yaml.YAMLError as exc:
        source.issue((), f"YAML error: {exc}", 1)
        return None
    if node is None:
        source.issue((), "file is empty; expected a mapping with at least `backends`", 1)
        return None
    try:
        data = source.build(node, ())
    except _Abort as exc:
        source.issue(exc.loc, exc.message, exc.line)
        return None
    if data is None:
        source.issue((), "file is empty; expected a mapping with at least `backends`", 1)
        return None
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"{data!r}"
        source.issue((), f"the top level must be a mapping of settings, got {kind}")
        return None
    return data


def _check_references(data: dict[str, Any], source: _Source) -> None:
    """Routes must name a defined flag; route names must be unique."""
    routes, flags = data.get("routes"), data.get("flags", {})
    if not isinstance(routes, list):
        return
    pairs = [
        (r.get("flag"), r.get("name")) if isinstance(r, dict) else (None, None) for r in routes
    ]
    names = flags if isinstance(flags, dict) else {}
    for index, field, message in reference_problems(names, pairs):
        if field == "flag" and not isinstance(flags, dict):
            continue  # `flags` itself is broken; that error says enough
        source.issue(("routes", index, field), message)


def _explain(error: ErrorDetails, data: Any, source: _Source) -> tuple[Loc, str]:
    """A pydantic error -> (path that exists in the file, message for an operator).

    ``loc`` is walked along the raw data; steps that do not exist there (union
    members, fields of a short form such as ``- cookie: sid``) are dropped, so
    the path is always one the operator wrote, except for a missing key.
    """
    loc: Loc = ()
    value: Any = data
    missing_key = False
    for part in error["loc"]:
        if part in _LOC_ALIASES:
            break  # an invalid dict key: point at the key itself
        if isinstance(value, dict) and isinstance(part, str):
            if part not in value:
                if error["type"] == "missing":
                    loc, missing_key = (*loc, part), True
                break
            loc = (*loc, part)
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            loc = (*loc, part)
            value = value[part]
        else:
            break  # a pydantic-internal step (union member, validator name): stop here
    if error["type"] == "missing" and not missing_key:
        return loc, "too few items" if isinstance(value, list) else "a required value is missing"
    return loc, operator_message(error, source.scalars.get(loc))
