"""The two sides of a migration, as the hot path indexes them."""

from __future__ import annotations

LEGACY = 0
NEW = 1
BACKEND_NAMES = ("legacy", "new")
BACKEND_BY_NAME = {"legacy": LEGACY, "new": NEW}
