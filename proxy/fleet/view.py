"""Heartbeats and the fleet view of `GET /status`: pure functions, no I/O.

Each replica writes one heartbeat record (``Heartbeat``) into a Redis hash every
``HEARTBEAT_SECONDS``; any replica's ``/status`` reads the hash back and shows
every replica with the age of its heartbeat. A replica silent for more than
``STALE_AFTER`` heartbeats is shown as stale; after ``PRUNE_SECONDS`` it is
removed from the hash (a replica that was replaced, not one that hiccupped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

HEARTBEAT_SECONDS = 2.0
STALE_AFTER = 3
PRUNE_SECONDS = 300.0


def stale_seconds() -> float:
    return HEARTBEAT_SECONDS * STALE_AFTER


@dataclass(frozen=True)
class Heartbeat:
    replica: str
    at: float
    """Unix time of the heartbeat (replicas compare wall clocks: keep them in NTP)."""
    version: int
    """The state version the replica has applied."""
    leader: bool
    admin: str
    store_up: bool

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))


def decode_heartbeat(replica: str, raw: bytes) -> Heartbeat | None:
    """A heartbeat record, or None for one this version cannot read (skipped)."""
    try:
        data = orjson.loads(raw)
        return Heartbeat(
            replica=replica,
            at=float(data["at"]),
            version=int(data["version"]),
            leader=bool(data["leader"]),
            admin=str(data["admin"]),
            store_up=bool(data.get("store_up", True)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def to_prune(records: Mapping[str, bytes], now: float) -> list[str]:
    """Replicas whose last heartbeat is older than ``PRUNE_SECONDS`` (or unreadable)."""
    gone = []
    for replica, raw in records.items():
        beat = decode_heartbeat(replica, raw)
        if beat is None or now - beat.at > PRUNE_SECONDS:
            gone.append(replica)
    return gone


def fleet_view(
    records: Mapping[str, bytes],
    leader: str | None,
    me: str,
    store_up: bool,
    version: int,
    now: float,
) -> dict[str, Any]:
    """The ``fleet`` object of ``/status``: who leads, and each replica's heartbeat age,
    state version and whether it is stale. ``store_up``/``version``: this replica's."""
    replicas = []
    for replica, raw in sorted(records.items()):
        beat = decode_heartbeat(replica, raw)
        if beat is None:
            continue
        age = max(0.0, now - beat.at)
        replicas.append(
            {
                "id": replica,
                "admin": beat.admin,
                "leader": replica == leader,
                "heartbeat_age_seconds": round(age, 3),
                "state_version": beat.version,
                "stale": age > stale_seconds(),
                "self": replica == me,
            }
        )
    return {
        "replica": me,
        "leader": leader,
        "state_store_up": store_up,
        "state_version": version,
        "replicas": replicas,
    }
