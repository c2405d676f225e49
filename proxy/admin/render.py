"""The text the admin CLI prints: pure functions of the admin API's JSON answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxy.config.values import is_number


def format_percent(value: Any) -> str:
    """``25`` -> ``25%``, ``12.5`` -> ``12.5%``."""
    if not is_number(value):
        return "?"
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def format_change(doc: Mapping[str, Any], note: str = "") -> str:
    """``user-api: 10% -> 25%`` for a mutating call's answer."""
    line = f"{doc.get('flag', '?')}: {format_percent(doc.get('before'))} -> "
    line += format_percent(doc.get("after"))
    return f"{line} ({note})\n" if note else f"{line}\n"


def format_rollback_all(doc: Mapping[str, Any]) -> str:
    flags = doc.get("flags") or []
    if not flags:
        return "no flags to roll back\n"
    lines = [
        format_change(item, "rolled back") if isinstance(item, dict) else f"{item}: rolled back\n"
        for item in flags
    ]
    return "".join(lines)


def format_status(doc: Mapping[str, Any]) -> str:
    """The `turnout status` table for a ``GET /status`` document."""
    lines = [_summary_line(doc), ""]
    flags = [flag for flag in doc.get("flags") or [] if isinstance(flag, dict)]
    if not flags:
        return "\n".join([*lines, "no flags configured", *format_fleet(doc.get("fleet"))]) + "\n"
    rows = [list(_COLUMNS), *(_flag_row(flag) for flag in flags)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    shadow = _shadow_lines(flags)
    lines = [*lines, *([""] if shadow else []), *shadow]
    lines.extend(format_canaries(flags))
    lines.extend(format_fleet(doc.get("fleet")))
    return "\n".join(lines) + "\n"


def format_fleet(fleet: Any) -> list[str]:
    """Below the table in fleet mode: the store, the leader and each replica's heartbeat
    age and state version (``*`` marks the replica that answered)."""
    if not isinstance(fleet, dict):
        return []
    store = "up" if fleet.get("state_store_up") else "DOWN (changes refused)"
    head = (
        f"fleet: state store {store}, state version {fleet.get('state_version', '?')}, "
        f"leader {fleet.get('leader') or 'none'}"
    )
    rows = [["REPLICA", "ADMIN", "LEADER", "HEARTBEAT", "VERSION"]]
    for replica in fleet.get("replicas") or []:
        if isinstance(replica, dict):
            rows.append(_replica_row(replica))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return ["", head, *(line.rstrip() for line in table)]


def _replica_row(replica: Mapping[str, Any]) -> list[str]:
    age = replica.get("heartbeat_age_seconds")
    heartbeat = f"{age:.1f}s ago" if is_number(age) else "?"
    if replica.get("stale"):
        heartbeat += " (stale)"
    name = str(replica.get("id", "?")) + (" *" if replica.get("self") else "")
    return [
        name,
        str(replica.get("admin") or "-"),
        "yes" if replica.get("leader") else "",
        heartbeat,
        str(replica.get("state_version", "?")),
    ]


_BACKENDS = ("legacy", "new")
_COLUMNS = (
    "FLAG",
    "PHASE",
    "PERCENT",
    "CANARY",
    *(f"{name.upper()} {what}" for name in _BACKENDS for what in ("REQ/S", "ERR", "P99")),
    "SHADOW PARITY",
)


def _summary_line(doc: Mapping[str, Any]) -> str:
    backends = doc.get("backends") or {}
    states = []
    for name in _BACKENDS:
        up = (backends.get(name) or {}).get("up")
        states.append(f"{name} {'?' if up is None else 'up' if up else 'DOWN'}")
    return f"config {str(doc.get('config_hash', '?'))[:12]}   backends: {', '.join(states)}"


def _flag_row(flag: Mapping[str, Any]) -> list[str]:
    row = [str(flag.get("name", "?")), str(flag.get("phase", "?")), _percent_cell(flag)]
    row.append(_canary_cell(flag.get("canary")))
    per_backend = flag.get("backends") or {}
    for name in _BACKENDS:
        row.extend(_backend_cells(per_backend.get(name) or {}))
    row.append(_parity_cell(flag.get("shadow")))
    return row


def _parity_cell(shadow: Any) -> str:
    if not isinstance(shadow, dict):
        return "-"
    compared = (shadow.get("match") or 0) + (shadow.get("mismatch") or 0)
    parity = shadow.get("parity")
    if not compared or not is_number(parity):
        return "no data"
    return f"{parity * 100:.1f}% of {compared}"


def _shadow_lines(flags: list[dict[str, Any]]) -> list[str]:
    """Under the table: each shadowed route's top differing fields."""
    lines: list[str] = []
    for flag in flags:
        shadow = flag.get("shadow")
        routes = shadow.get("routes") if isinstance(shadow, dict) else None
        for route, paths in (routes or {}).items():
            lines.append(f"{flag.get('name')} {route}: differing fields")
            for item in paths[:5]:
                example = item.get("example") or {}
                noise = " (noise)" if item.get("noise") else ""
                shown = f"{example.get('legacy')!r} vs {example.get('new')!r}"
                lines.append(f"  {item.get('count')}x {item.get('path')}{noise}  e.g. {shown}")
    return lines


def _percent_cell(flag: Mapping[str, Any]) -> str:
    text = format_percent(flag.get("percent"))
    override = flag.get("override")
    if isinstance(override, dict):
        reason, by = override.get("reason") or "set", override.get("by")
        who = reason if by in (None, "", reason) else f"{reason} by {by}"
        text += f" (override: {who}; file {format_percent(flag.get('file_percent'))})"
    return text


def _canary_cell(canary: Any) -> str:
    if not isinstance(canary, dict):
        return "-"
    step, steps = canary.get("step"), canary.get("steps")
    state = str(canary.get("state", "?"))
    if state == "progressing" and canary.get("holding"):
        state = "holding"
    if step is None or state in ("promoted", "rolled_back"):
        return state
    of = f"/{len(steps)}" if isinstance(steps, list) else ""
    return f"{state} step {step}{of}"


def format_canaries(flags: Sequence[Mapping[str, Any]]) -> list[str]:
    """Below the table, per canary flag: state and reason, the time to the next
    judgement, the last verdict and each check's result with its note."""
    lines: list[str] = []
    for flag in flags:
        canary = flag.get("canary")
        if isinstance(canary, dict):
            lines.extend(["", *_canary_lines(str(flag.get("name", "?")), canary)])
    return lines


def _canary_lines(name: str, canary: Mapping[str, Any]) -> list[str]:
    head = f"canary {name}: {_canary_cell(canary)}"
    if canary.get("reason"):
        head += f" ({canary['reason']})"
    following = canary.get("next_judgement_seconds")
    if is_number(following):
        head += f", next judgement in {following:.0f}s"
    lines = [head]
    last = canary.get("last")
    if not isinstance(last, dict):
        return [*lines, "  no judgement yet"]
    new, legacy = last.get("new") or {}, last.get("legacy") or {}
    source = ", the fleet's numbers from Prometheus" if last.get("source") == "prometheus" else ""
    lines.append(
        f"  last verdict: {last.get('result', '?')}"
        f" (new {new.get('requests', '?')} req, legacy {legacy.get('requests', '?')} req{source})"
    )
    for check in last.get("checks") or []:
        if isinstance(check, dict):
            lines.append(f"  {_check_line(check)}")
    return lines


def _check_line(check: Mapping[str, Any]) -> str:
    numbers = check.get("numbers") or {}
    shown = ", ".join(
        f"{key}={value:.4g}" if is_number(value) else f"{key}={value}"
        for key, value in numbers.items()
    )
    line = f"{check.get('name', '?')!s:<20} {check.get('result', '?')!s:<8} {shown}"
    note = check.get("note")
    return f"{line}  - {note}" if note else line.rstrip()


def _backend_cells(numbers: Mapping[str, Any]) -> list[str]:
    rps, rate, p99 = numbers.get("rps"), numbers.get("error_rate"), numbers.get("p99_seconds")
    rps_cell = f"{rps:.1f}" if is_number(rps) else "-"
    no_traffic = not numbers.get("requests")
    rate_cell = "-" if no_traffic or not is_number(rate) else f"{rate * 100:.2f}%"
    return [rps_cell, rate_cell, _seconds(p99) if is_number(p99) else "-"]


def _seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.1f}ms"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
