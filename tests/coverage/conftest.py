"""Fixture documents and config of the coverage tests (tests/coverage/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.loader import load_config
from proxy.config.models import Config
from proxy.coverage.operations import Document, read_document
from proxy.coverage.source import parse_document

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY = FIXTURES / "legacy-3.0.json"
NEW = FIXTURES / "new-3.1.yaml"
CONFIG = FIXTURES / "turnout.yaml"


def document(path: Path) -> Document:
    return read_document(str(path), parse_document(str(path), path.read_bytes()))


@pytest.fixture
def legacy() -> Document:
    return document(LEGACY)


@pytest.fixture
def new() -> Document:
    return document(NEW)


@pytest.fixture
def config() -> Config:
    return load_config(str(CONFIG))
