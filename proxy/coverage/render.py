"""The report of ``proxy.coverage.report`` as a terminal table or Markdown (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_OPERATION_COLUMNS = ("METHOD", "PATH", "NEW", "ROUTE", "FLAG", "PERCENT", "PHASE")
_ONLY_NEW_COLUMNS = ("METHOD", "PATH", "ROUTE", "FLAG")
_FLAG_COLUMNS = ("FLAG", "OPERATIONS", "IN NEW", "PERCENT", "PHASE")
_PHASE_COLUMNS = ("PHASE", "OPERATIONS", "IN NEW")


def percent_text(value: Any) -> str:
    """``25.0`` -> ``25%``, ``12.5`` -> ``12.5%``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def share_text(part: int, whole: int, share: Any) -> str:
    if not whole or share is None:
        return f"{part} of {whole}"
    return f"{part} of {whole} ({percent_text(share * 100)})"


def _new_cell(op: Mapping[str, Any]) -> str:
    if not op["in_new"]:
        return "MISSING"
    return "yes" if op["new_path"] == op["path"] else f"yes, as {op['new_path']}"


def _sections(doc: Mapping[str, Any]) -> list[tuple[str, Sequence[str], list[list[str]]]]:
    operations = [
        [
            op["method"],
            op["path"],
            _new_cell(op),
            op["route"],
            op["flag"],
            percent_text(op["percent"]),
            op["phase"],
        ]
        for op in doc["operations"]
    ]
    only_new = [[op["method"], op["path"], op["route"], op["flag"]] for op in doc["only_in_new"]]
    flags = [
        [
            f["flag"],
            str(f["operations"]),
            str(f["in_new"]),
            percent_text(f["percent"]),
            f["phase"],
        ]
        for f in doc["flags"]
    ]
    phases = [[name, str(n["operations"]), str(n["in_new"])] for name, n in doc["phases"].items()]
    return [
        ("Legacy operations", _OPERATION_COLUMNS, operations),
        ("Only in new", _ONLY_NEW_COLUMNS, only_new),
        ("Per flag", _FLAG_COLUMNS, flags),
        ("Per phase", _PHASE_COLUMNS, phases),
    ]


def _headline(doc: Mapping[str, Any]) -> list[str]:
    lines = []
    for side in ("legacy", "new"):
        d = doc[side]
        title = f"{d['title']}, " if d["title"] else ""
        lines.append(
            f"{side}: {d['source']} ({title}OpenAPI {d['openapi']}, {d['operations']} operations)"
        )
    return lines


def _totals(doc: Mapping[str, Any]) -> list[str]:
    served = doc["served_by_new_at_100"]
    lines = [
        "Legacy operations served by new at 100%: "
        + share_text(served["operations"], served["of"], served["share"])
    ]
    live = doc.get("live_requests")
    if live is not None:
        share = share_text(live["new"], live["total"], live["share"])
        lines.append(f"Live requests answered by new: {share}")
    return lines


def render_table(doc: Mapping[str, Any]) -> str:
    lines = [*_headline(doc)]
    for title, columns, rows in _sections(doc):
        lines += ["", f"{title}:"]
        lines += _aligned([list(columns), *rows]) if rows else ["  (none)"]
    lines += ["", *_totals(doc)]
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_markdown(doc: Mapping[str, Any]) -> str:
    lines = ["# API coverage", ""]
    lines += [f"- {line}" for line in _headline(doc)]
    for title, columns, rows in _sections(doc):
        lines += ["", f"## {title}", ""]
        if not rows:
            lines.append("(none)")
            continue
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    lines += ["", *(f"**{line}**" for line in _totals(doc))]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    cell = text.replace("|", "\\|")
    if cell.startswith("yes, as "):
        return f"yes, as `{cell[len('yes, as ') :]}`"
    return f"`{cell}`" if cell.startswith("/") else cell
