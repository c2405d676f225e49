"""`turnout diffs` over a discrepancy log written by the real DiscrepancyLog (rotation included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.cli import main
from proxy.shadow.discrepancies import DiscrepancyLog


def record(path: str, diffs: list[dict[str, Any]], flag: str = "user-api") -> dict[str, Any]:
    return {"flag": flag, "route": "/api/users/**", "path": path, "diffs": diffs}


def test_diffs_summarises_the_log_and_its_rotated_files(tmp_path: Path, capsys: Any) -> None:
    log_path = tmp_path / "d.jsonl"
    log = DiscrepancyLog(str(log_path), max_bytes=400, backups=10)  # rotates every line or two
    price = {"path": "body.items[3].price", "legacy": 20, "new": 22, "noise": False}
    nonce = {"path": "body.nonce", "legacy": "a", "new": "b", "noise": True}
    for index in range(6):
        log.write(record(f"/api/users/{index}", [price, nonce]), [], [])
    log.write(record("/other", [nonce], flag="other"), [], [])
    log.close()
    assert len(list(tmp_path.glob("d.jsonl*"))) > 1  # really rotated

    assert main(["diffs", "--log", str(log_path), "--flag", "user-api"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "6 mismatches"
    assert out[2] == "user-api  /api/users/**"
    assert out[3].split() == ["6", "body.items[*].price", "e.g.", "20", "→", "22", "at",
                              "/api/users/0"]  # fmt: skip
    assert "body.nonce  (noise)" in out[4]

    assert main(["diffs", "--log", str(log_path)]) == 0
    assert capsys.readouterr().out.startswith("7 mismatches")


def test_diffs_reads_the_path_from_the_config_and_explains_a_missing_log(
    tmp_path: Path, capsys: Any
) -> None:
    config = tmp_path / "t.yaml"
    config.write_text(
        "backends: {legacy: {url: 'http://127.0.0.1:1'}, new: {url: 'http://127.0.0.1:2'}}\n"
        f"discrepancy_log: {tmp_path / 'none.jsonl'}\n"
    )
    assert main(["diffs", "-c", str(config)]) == 1
    assert "no such file" in capsys.readouterr().err


def test_the_log_is_bounded_by_its_backups(tmp_path: Path) -> None:
    log = DiscrepancyLog(str(tmp_path / "d.jsonl"), max_bytes=300, backups=2)
    for index in range(50):
        log.write(record(f"/{index}", [{"path": "body.x", "legacy": 1, "new": 2}]), [], [])
    log.close()
    files = list(tmp_path.glob("d.jsonl*"))
    assert len(files) == 3 and all(f.stat().st_size <= 600 for f in files)
