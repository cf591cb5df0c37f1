"""socklab compare end to end: real cells, real servers, private namespaces where possible."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.netns import can_isolate

ISOLATION, WHY_NOT = can_isolate()


def compare(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtest.cli", "compare", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def start_compare(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loadtest.cli", "compare", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def summary(out: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with (out / "summary.csv").open() as f:
        return {(r["scenario"], r["variant"], r["users"]): r for r in csv.DictReader(f)}


def ours_running() -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if ("locust" in cmd and "loadtest/locustfile.py" in cmd) or " -m servers " in f"{cmd} ":
            found.append(cmd)
    return found


def test_io_wait_blocking_serializes_selectors_scales(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = compare("--variants", "blocking,selectors", "--users", "10", "--scenario", "io-wait",
                   "--duration", "3s", "--warmup", "1s", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"compare report: {(out / 'compare.html').resolve()}" in done.stdout
    for name in ("summary.csv", "compare.html", "plotly.min.js"):
        assert (out / name).exists(), name
    for cell in ("io-wait-blocking-u10", "io-wait-selectors-u10"):
        for name in ("run.json", "summary.csv", "report.html", "monitor.csv", "socklab_latency.csv"):
            assert (out / cell / name).exists(), f"{cell}/{name}"
    rows = summary(out)
    blocking = float(rows[("io-wait", "blocking", "10")]["rps"])
    selectors = float(rows[("io-wait", "selectors", "10")]["rps"])
    assert 0 < blocking <= 1.2 * (1 / 0.020)  # one client at a time, 20 ms each
    assert selectors >= 5 * blocking
    # Throughput over time is counted inside the window only (a 1 s warm-up reset Locust's counts):
    # no negative point, and its mean agrees with the summary's rps.
    from loadtest.report.charts import throughput_series
    from loadtest.report.load import load_run

    series = throughput_series(load_run(out / "io-wait-selectors-u10"))  # whole seconds of a 3 s window
    assert len(series) >= 1 and (series["rps"] >= 0).all(), series
    assert abs(series["rps"].mean() - selectors) <= 0.1 * selectors, (series, selectors)
    assert ours_running() == []


@pytest.mark.skipif(not ISOLATION, reason=f"no private network namespace: {WHY_NOT}")
def test_conn_storm_overflows_blocking_with_exact_counters(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = compare("--variants", "blocking", "--users", "30", "--scenario", "conn-storm", "--backlog", "2",
                   "--duration", "3s", "--warmup", "1s", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    row = summary(out)[("conn-storm", "blocking", "30")]
    assert row["counters_scope"] == "isolated"
    assert int(row["listen_overflows"]) > 0
    assert int(row["backlog"]) == 2 and int(row["peak_accept_queue"]) <= 3
    assert int(row["peak_time_wait"]) > 0
    assert "packets dropped at a full accept queue (ListenOverflows) at backlog 2" in (out / "compare.html").read_text()


def test_sigint_mid_matrix_keeps_finished_cells(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = start_compare("--variants", "blocking,threaded,selectors", "--users", "5", "--scenario", "echo",
                         "--duration", "3s", "--warmup", "0s", "--out", str(out))  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "echo-blocking-u5" / "summary.csv").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(2.0)  # well into the second cell
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: kept 1 of 3 cells" in stdout
    rows = summary(out)
    assert list(rows) == [("echo", "blocking", "5")]
    assert (out / "compare.html").exists()
    time.sleep(0.5)
    assert ours_running() == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--variants", "blocking,nosuch"], "--variants"),
        (["--scenario", "nosuch"], "invalid choice: 'nosuch'"),
        (["--users", "0"], "--users"),
        (["--duration", "soon"], "--duration"),
        (["--op", "PING"], "invalid choice: 'PING'"),
        (["--sleep-ms", "-5"], "--sleep-ms"),
    ],
)
def test_bad_options_exit_2(args: list[str], words: str) -> None:
    done = compare(*args, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_a_server_that_dies_is_reported_and_the_matrix_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = start_compare("--variants", "threaded,selectors", "--users", "3", "--scenario", "io-wait",
                         "--duration", "4s", "--warmup", "0s", "--out", str(out))  # fmt: skip
    deadline = time.monotonic() + 60
    victim = None
    while victim is None:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info.get("cmdline") or []
            if "servers" in cmd[:4] and cmd[cmd.index("servers") + 1 :][:1] == ["threaded"]:
                victim = p
        time.sleep(0.1)
    time.sleep(1.5)
    victim.kill()
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 1, stdout + stderr
    assert "io-wait/threaded/3u" in stdout and "SERVER DIED" in stdout
    assert "cells that did not run cleanly: io-wait/threaded/3u" in stdout
    rows = summary(out)  # the matrix went on: the next cell ran and both are compared
    assert float(rows[("io-wait", "selectors", "3")]["rps"]) > 100
    assert ("io-wait", "threaded", "3") in rows
    assert ours_running() == []
