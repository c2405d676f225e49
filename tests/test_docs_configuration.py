"""docs/configuration.md stays true: its examples validate and every key is in it.

Each ```yaml block of the page is either a whole config (it has ``backends``)
or a fragment, which is merged into a small base config before validation.
Every key of the config models must appear on the page as `` `key` ``, so a
new key cannot ship undocumented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from proxy.config.loader import parse_config
from proxy.config.models import Config
from tests.support.certs import TestPki

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
TEXT = PAGE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```yaml\n(.*?)```", TEXT, re.DOTALL)

BASE: dict[str, Any] = {
    "backends": {
        "legacy": {"url": "http://127.0.0.1:8000"},
        "new": {"url": "http://127.0.0.1:3000"},
    },
    "flags": {"public-api": {}, "user-api": {}, "account-api": {}},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class _Loader(yaml.SafeLoader):
    """Safe loading with YAML 1.2 booleans, as Turnout reads keys: `on:` stays "on"."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag != "tag:yaml.org,2002:bool" or regexp.match("on") is None
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_example_validates(block: str, tmp_path: Path) -> None:
    if "/etc/turnout/" in block:  # the TLS examples' files, made for real
        pki = TestPki(tmp_path)
        pki.issue("client", "turnout-client@example.com")  # client.pem, client.key
        block = block.replace("/etc/turnout/", f"{tmp_path}/")
    data = yaml.load(block, Loader=_Loader)
    assert isinstance(data, dict)
    if "backends" not in data:
        block = yaml.safe_dump(merged(BASE, data), sort_keys=False)
    parse_config(block, "docs/configuration.md")


def model_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(kind: Any) -> None:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind in seen:
                return
            seen.add(kind)
            for name, field in kind.model_fields.items():
                keys.add(name)
                walk(field.annotation)
            return
        if get_origin(kind) in (list, dict, tuple, Union) or get_args(kind):
            for arg in get_args(kind):
                walk(arg)

    walk(model)
    return keys


# Model fields that are not YAML keys of their own: the long forms of short
# YAML syntaxes (a listen address's host/port, a sticky source's fields).
LONG_FORM_FIELDS = {"host", "port", "kind", "jwt_in"}


def test_every_config_key_is_documented() -> None:
    prose = re.sub(r"```.*?```", "", TEXT, flags=re.DOTALL)
    code = " ".join(re.findall(r"`([^`]+)`", prose))  # inline code spans
    missing = sorted(
        key
        for key in model_keys(Config) - LONG_FORM_FIELDS
        if not re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", code)
    )
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


@pytest.mark.parametrize("path", ["README.md", "docs/configuration.md"])
def test_docs_stand_alone(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    assert "../shared" not in text
    assert "SPEC" not in text
