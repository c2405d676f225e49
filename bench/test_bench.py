"""Unit tests for the benchmark's parsers (no processes started).

Run: .venv/bin/pytest bench/test_bench.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import nginx, procs, pyspy, turnout, wrk

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  412.33us  22.50ms   91.20%
    Req/Sec    44.21k     1.90k   47.36k    72.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.45ms
     99%    2.01s
  440012 requests in 10.00s, 79.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  44001.20
Transfer/sec:      7.91MB
"""


def test_to_ms_units() -> None:
    assert wrk.to_ms("812.00us") == pytest.approx(0.812)
    assert wrk.to_ms("1.10ms") == pytest.approx(1.1)
    assert wrk.to_ms("2.01s") == pytest.approx(2010)
    assert wrk.to_ms("1.50m") == pytest.approx(90_000)
    with pytest.raises(ValueError):
        wrk.to_ms("12 parsecs")


def test_parse_wrk_output() -> None:
    run = wrk.parse(WRK_OUTPUT)
    assert run.requests == 440012
    assert run.rps == pytest.approx(44001.2)
    assert run.p50_ms == pytest.approx(0.812)
    assert run.p99_ms == pytest.approx(2010)
    assert run.non2xx == 7
    assert run.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert run.errors == 12


def test_parse_clean_output_has_no_errors() -> None:
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert wrk.parse(clean).errors == 0


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused")


def test_summary_takes_medians_and_sums() -> None:
    runs = [wrk.WrkRun(100, rps, p50, p99) for rps, p50, p99 in [(3, 1, 9), (1, 3, 7), (2, 2, 8)]]
    s = wrk.Summary.of(runs)
    assert (s.rps, s.p50_ms, s.p99_ms, s.requests, s.errors) == (2, 2, 8, 300, 0)


def test_requests_total_sums_every_label_set() -> None:
    text = """\
# HELP turnout_requests_total Requests
# TYPE turnout_requests_total counter
turnout_requests_total{route="r0",flag="bench",backend="legacy",method="GET",code="200"} 700.0
turnout_requests_total{route="r0",flag="bench",backend="new",method="GET",code="200"} 3.0e2
turnout_requests_created{route="r0",flag="bench",backend="new",method="GET",code="200"} 1.7e9
turnout_requests_total_other 5
turnout_requests_total 1
"""
    assert turnout.requests_total(text) == 1001


def test_metrics_check_tolerance() -> None:
    assert turnout.MetricsCheck(10_000, 10_050).ok
    assert not turnout.MetricsCheck(10_000, 10_200).ok
    assert not turnout.MetricsCheck(10_000, 5_000).ok


def test_turnout_config_matches_spec(tmp_path: Path) -> None:
    backends = nginx.Backends(8001, 8002)
    cfg = yaml.safe_load(turnout.config(tmp_path, backends, 8080, 9901))
    assert cfg["listen"] == "127.0.0.1:8080"
    assert cfg["admin"] == {"listen": "127.0.0.1:9901"}
    assert cfg["backends"]["new"] == {"url": "http://127.0.0.1:8002"}
    assert cfg["sticky"] == [{"header": "x-user-id"}, "client_ip"]
    assert cfg["flags"] == {"bench": {"percent": 30}}
    assert cfg["routes"] == [{"path": "/**", "flag": "bench"}]


def test_nginx_proxy_config_splits_on_user_header(tmp_path: Path) -> None:
    conf = nginx.proxy_config(tmp_path, nginx.Backends(8001, 8002), 8080)
    assert 'split_clients "${http_x_user_id}" $backend' in conf
    assert "30% new;" in conf and "keepalive 64;" in conf
    assert "worker_processes 1;" in conf and "access_log off;" in conf


def test_pyspy_own_time_counts_leaf_frames() -> None:
    collapsed = (
        'process 1:"python -m proxy";<module> (a.py:1);run (a.py:5);leaf (b.py:3) 5\n'
        'process 1:"python -m proxy";<module> (a.py:1);run (a.py:5);leaf (b.py:4) 2\n'
        'process 1:"python -m proxy";<module> (a.py:1);run (a.py:6) 3\n'
    )
    rows = pyspy.top_table(collapsed, n=2)
    assert rows[0][:2] == ("leaf (b.py)", 7)
    assert rows[1][:2] == ("run (a.py)", 3)
    assert rows[0][2] == pytest.approx(0.7)


def test_cpu_accounting_sees_a_child_and_its_cpu_time() -> None:
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", busy + "\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        tree = procs.process_tree(os.getpid())
        assert child.pid in tree and os.getpid() in tree
        deadline = time.monotonic() + 10
        while procs.cpu_seconds([child.pid]) < 0.25:  # the child burns 0.3 s, then waits
            assert time.monotonic() < deadline, "child CPU time never showed up"
            time.sleep(0.05)
        assert procs.cpu_seconds([child.pid]) < 5
    finally:
        child.kill()
        child.wait()
