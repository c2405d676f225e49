"""Config keys that validate but have no effect yet.

SPEC §3 defines them and configs written for the whole contract use them, so
they are accepted; but until their feature is built they do nothing, and an
operator must not believe otherwise. `turnout check` prints a warning for each
one present and `turnout serve` logs it at start-up; `/status` does not show a
phase that depends on one. When a feature lands, drop its key here.
"""

from __future__ import annotations

from proxy.config.models import Config

Loc = tuple[str | int, ...]

NOT_ACTIVE_TOP_LEVEL: dict[str, str] = {}
NOT_ACTIVE_PER_FLAG: dict[str, str] = {}
NOT_ACTIVE_IN_CANARY: dict[str, str] = {}


def is_active(flag_key: str) -> bool:
    """Whether a flag's ``flag_key`` block (e.g. ``shadow``) does anything in this version."""
    return flag_key not in NOT_ACTIVE_PER_FLAG


def inactive_keys(config: Config) -> list[tuple[Loc, str]]:
    """(key path, message) for each key in ``config`` that is accepted but not active yet."""
    found: list[tuple[Loc, str]] = [
        ((key,), _message(why))
        for key, why in NOT_ACTIVE_TOP_LEVEL.items()
        if getattr(config, key) is not None
    ]
    for name, flag in config.flags.items():
        found.extend(
            (("flags", name, key), _message(why))
            for key, why in NOT_ACTIVE_PER_FLAG.items()
            if getattr(flag, key) is not None
        )
        if flag.canary is not None:
            found.extend(
                (("flags", name, "canary", key), _message(why))
                for key, why in NOT_ACTIVE_IN_CANARY.items()
                if getattr(flag.canary, key) is not None
            )
    return found


def _message(why: str) -> str:
    return f"accepted but not active yet: {why}"
