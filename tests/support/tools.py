"""Tests that need a tool from outside Python (prometheus, redis-server, node): on a
developer machine without it they are skipped with the command that installs it; with
``CI`` set they fail instead, because CI installs everything and must run every test."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; in CI, fail with it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: these tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


def required_binary(command: str, install: str) -> str:
    """The path of ``command``, or ``unavailable`` naming ``install``."""
    found = shutil.which(command)
    if found is None:
        unavailable(f"{command} is not installed ({install})")
    return found
