"""The pure parts of fleet mode: the store URL, versions, the lease term, the fleet view."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.admin.render import format_status
from proxy.cli import main
from proxy.config.loader import ConfigError, parse_config
from proxy.config.state_store import parse_state_store
from proxy.control.controller import Controller
from proxy.control.state import FlagOverride, RuntimeState, StateStore
from proxy.fleet.lease import lease_seconds
from proxy.fleet.term import LeaseTerm
from proxy.fleet.view import Heartbeat, fleet_view, stale_seconds, to_prune
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Stats
from tests.conftest import make_config


def test_the_name_is_taken_off_the_url_and_namespaces_the_keys() -> None:
    address = parse_state_store("redis://:secret@redis.internal:6380/2?name=checkout")
    assert address.url == "redis://:secret@redis.internal:6380/2"
    assert address.name == "checkout"
    assert address.key("state") == "turnout:{checkout}:state"
    assert "secret" not in address.shown
    assert parse_state_store("redis://localhost").name == "turnout"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://localhost:6379/0", "expected redis://"),
        ("redis://:6379/0", "no host"),
        ("redis://localhost:6379/zero", "database"),
        ("redis://localhost:6379/0?db=1", "unknown parameter 'db'"),
        ("redis://localhost:6379/0?name=a b", "name must be"),
        ("redis://localhost:99999/0", "port"),
    ],
)
def test_a_bad_state_store_is_refused_at_load_naming_the_key(url: str, says: str) -> None:
    backends = "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}"
    text = f"{backends}\nstate_store: '{url}'\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text, "c.yaml")
    (issue,) = error.value.issues
    assert str(issue).startswith("c.yaml:2: state_store: ")
    assert says in str(issue)


def test_lease_length_from_the_environment() -> None:
    assert lease_seconds({}) == 10.0
    assert lease_seconds({"TURNOUT_LEADER_LEASE_SECONDS": "1.5"}) == 1.5
    for bad in ("soon", "0.1", "nan"):
        with pytest.raises(ValueError, match="TURNOUT_LEADER_LEASE_SECONDS"):
            lease_seconds({"TURNOUT_LEADER_LEASE_SECONDS": bad})


def test_a_lease_term_counts_from_when_the_command_was_sent() -> None:
    term = LeaseTerm(seconds=6.0)
    assert not term.held(0.0)
    assert term.granted(sent_at=10.0) is True  # a new term
    assert term.held(15.9) and not term.held(16.0)
    assert term.granted(sent_at=12.0) is False  # a renewal within the term
    assert term.held(17.9)
    assert term.lost() is True
    assert not term.held(12.1)
    assert term.lost() is False  # already not leading


def controller() -> Controller:
    loaded = make_config("http://127.0.0.1:1", "http://127.0.0.1:2")
    return Controller(loaded, StateStore(None), Stats(), PoolRegistry())


def test_only_a_newer_version_of_the_state_is_adopted() -> None:
    control = controller()
    ten = RuntimeState({"main": FlagOverride(10.0, "set", "a", 1.0)})
    twenty = RuntimeState({"main": FlagOverride(20.0, "set", "b", 2.0)})
    assert control.adopt(twenty, 5)
    assert control.table.flags["main"].percent == 20.0
    assert not control.adopt(ten, 4)  # an older read arriving late
    assert not control.adopt(ten, 5)
    assert control.table.flags["main"].percent == 20.0
    assert control.version == 5


def beat(replica: str, at: float, version: int = 3, leader: bool = False) -> bytes:
    return Heartbeat(replica, at, version, leader, f"{replica}:9901", True).encode()


def test_the_fleet_view_shows_the_leader_ages_versions_and_stale_replicas() -> None:
    now = 1000.0
    records = {
        "a": beat("a", now - 1, leader=True),
        "b": beat("b", now - 2, version=2),
        "c": beat("c", now - stale_seconds() - 1),
        "garbage": b"{not json",
    }
    view = fleet_view(records, "a", "b", True, 2, now)
    assert view["leader"] == "a" and view["replica"] == "b" and view["state_store_up"]
    rows = {row["id"]: row for row in view["replicas"]}
    assert set(rows) == {"a", "b", "c"}  # an unreadable record is skipped
    assert rows["a"]["leader"] and not rows["b"]["leader"]
    assert rows["b"]["self"] and rows["b"]["state_version"] == 2
    assert rows["a"]["heartbeat_age_seconds"] == 1.0
    assert [name for name, row in rows.items() if row["stale"]] == ["c"]


def test_long_silent_and_unreadable_records_are_pruned() -> None:
    records = {"old": beat("old", 0.0), "new": beat("new", 990.0), "junk": b"[]"}
    assert sorted(to_prune(records, 1000.0)) == ["junk", "old"]


def test_turnout_status_shows_the_fleet_under_the_flags() -> None:
    records = {"a": beat("a", 999.0, leader=True), "b": beat("b", 900.0, version=2)}
    view = fleet_view(records, "a", "a", True, 3, 1000.0)
    text = format_status({"config_hash": "abc", "flags": [], "backends": {}, "fleet": view})
    lines = text.splitlines()
    assert "fleet: state store up, state version 3, leader a" in lines
    (row_a,) = [line for line in lines if line.strip().startswith("a *")]
    assert "yes" in row_a.split() and "1.0s ago" in row_a
    (row_b,) = [line for line in lines if line.strip().startswith("b ")]
    assert "100.0s ago (stale)" in row_b and row_b.split()[-1] == "2"
    down = format_status({"flags": [], "fleet": {**view, "state_store_up": False}})
    assert "state store DOWN (changes refused)" in down


def test_check_warns_that_without_prometheus_the_leader_judges_its_own_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "turnout.yaml"
    config.write_text(
        "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}\n"
        "state_store: redis://127.0.0.1:6379/0\n"
        "flags: {main: {percent: 0, canary: {steps: [10, 100]}}}\n"
        "routes: [{path: /**, flag: main}]\n"
    )
    assert main(["check", "-c", str(config)]) == 0
    assert (
        f"{config}: state_store: warning: state_store is set but the canary of main has no "
        "prometheus_url: the replica that holds the judge's lease judges only its own share"
    ) in capsys.readouterr().err
