"""Where each connection's time goes: the client's records joined to the server's, against known truths.

A one-at-a-time server with SLEEP 100 ms and 5 clients arriving at once serves them one after the
other: their accept-queue waits are a staircase of 0, 100, 200, 300, 400 ms, and each is served in
100 ms.  A thread per connection accepts at once.  A pool of 2 fed by an accepting thread accepts at
once and queues them itself: the staircase moves into the pool's queue.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from loadtest.report import build_run_report
from loadtest.report.rules.stages import STOPPED_BY_THE_RUN
from tests.helpers import run_locust


def arrive_at_once(tmp_path: Path, server: str, users: int, *args: str) -> pd.DataFrame:
    run = run_locust(
        tmp_path,
        "ConnectPerRequestUser",
        "--server",
        server,
        "--op",
        "SLEEP",
        "--sleep-ms",
        "100",
        "--connections-total",
        str(users),
        *args,
        users=users,
        seconds=10,
        page=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    frame = pd.read_csv(run.report_dir / "connections.csv", low_memory=False)
    assert len(frame) == users and (frame["join"] == "joined").all(), frame["join"].value_counts()
    return frame.sort_values("accept_queue").reset_index(drop=True)


def staircase(values: pd.Series, step_ms: float, per_step: int = 1) -> list[float]:
    return [abs(v - (i // per_step) * step_ms) for i, v in enumerate(values)]


def test_a_one_at_a_time_server_makes_a_staircase_in_the_accept_queue(tmp_path: Path) -> None:
    frame = arrive_at_once(tmp_path, "blocking", 5)
    assert max(staircase(frame["accept_queue"], 100)) <= 20, frame["accept_queue"].tolist()
    assert frame["service"].between(99, 110).all(), frame["service"].tolist()  # each served in its 100 ms
    assert (frame["pool_queue"] < 1).all()  # nobody between accept() and the one loop
    assert frame["teardown"].str.startswith("client closed first").all()  # it closes after its reply
    with (tmp_path / "run" / "summary.csv").open() as f:
        row = next(csv.DictReader(f))
    assert row["timeline"] == "measured" and int(row["connections_joined"]) == 5
    assert 180 <= float(row["accept_queue_wait_p50_ms"]) <= 220  # the middle of the staircase
    # Where the time went, every user in the window: 1,000 ms queued against 500 ms served (each user is idle
    # once its one connection is done: the load generator's own time).
    assert float(row["window_share_accept_queue"]) > 1.8 * float(row["window_share_service"]) > 0.3
    page = (tmp_path / "run" / "report.html").read_text()
    assert "in the accept queue" in page and 'id="sequence-median"' in page and 'id="breakdown"' in page

    # A missing or truncated server log: a report that says what was not measured; never a crash.  The
    # kernel's trace still measures the accept queue; without it too, the wait is not measured.
    kernel = json.loads((tmp_path / "run" / "run.json").read_text())["kernel_trace"]["status"] == "measured"
    for damage, words in (("truncate", "cut short"), ("remove", "no server log"), ("no kernel", "no server log")):
        copy = tmp_path / damage
        shutil.copytree(tmp_path / "run", copy)
        log = copy / "server_connections.bin"
        if damage == "truncate":
            log.write_bytes(log.read_bytes()[:5000])
        else:
            log.unlink()
        if damage == "no kernel":
            (copy / "kernel_connections.csv").unlink(missing_ok=True)
        build_run_report(copy)
        with (copy / "summary.csv").open() as f:
            row = next(csv.DictReader(f))
        assert words in row["timeline"] and int(row["connections_joined"]) == 0, row["timeline"]
        if kernel and damage != "no kernel":
            assert 180 <= float(row["accept_queue_wait_p50_ms"]) <= 220  # the kernel's: no server log needed
            assert row["server_service_p50_ms"] == ""  # the server's own stages need its log
        else:
            assert row["accept_queue_wait_p50_ms"] == ""  # not measured, not a wrong number
        assert words in (copy / "report.html").read_text()


def at_once_ms(users: int) -> float:
    """The longest accept-queue wait that still means "accepted at once" for a thread-based accepter.

    The accepting thread may wait for the GIL behind each thread it has just started, up to the
    interpreter's switch interval (5 ms) a time, so the last of N clients arriving together may wait N
    intervals (CI saw 6.4 ms, then 11.0 ms, for the fifth of five).  That is still a quarter of one step
    of the 100 ms staircase a one-at-a-time server makes, so the two cannot be confused.
    """
    return users * sys.getswitchinterval() * 1000


def test_a_thread_per_connection_accepts_at_once(tmp_path: Path) -> None:
    frame = arrive_at_once(tmp_path, "threaded", 5)
    assert (frame["accept_queue"] <= at_once_ms(5)).all(), frame["accept_queue"].tolist()
    assert frame["service"].between(99, 110).all()


def test_a_pool_fed_by_an_accepting_thread_moves_the_wait_into_its_queue(tmp_path: Path) -> None:
    frame = arrive_at_once(tmp_path, "threadpool", 6, "--server-workers", "2")
    assert (frame["accept_queue"] <= at_once_ms(6)).all(), frame["accept_queue"].tolist()  # the main thread accepts
    waits = frame.sort_values("pool_queue")["pool_queue"]
    assert max(staircase(waits, 100, per_step=2)) <= 20, waits.tolist()  # two workers: two a step
    workers = frame["worker"].nunique()
    assert workers == 2, frame["worker"].tolist()  # the log says which of the two served each


@pytest.mark.parametrize("option", [["--conn-log-cap", "0"], ["--conn-log-cap", "0", "--kernel-trace", "off"]])
def test_without_a_server_log_the_client_side_stands_alone(tmp_path: Path, option: list[str]) -> None:
    """Without a server log the kernel still measures up to accept(); without the kernel too, the client's
    stages stand alone and the rest is not measured (the run says why)."""
    run = run_locust(tmp_path, "ConnectPerRequestUser", "--server", "selectors", *option, users=2, seconds=1, page=True)
    assert run.returncode == 0, run.stderr[-2000:]
    frame = pd.read_csv(run.report_dir / "connections.csv", low_memory=False)
    # Every connection that connected has no server log to join; one whose connect() the run's end cut short
    # never connected (and says so).
    connected = frame[frame["connected"] == 1]
    assert len(connected) > 10 and (connected["join"] == "no server log").all(), frame["join"].value_counts()
    never = frame[frame["connected"] != 1]
    assert (never["join"] == "never connected").all() and (never["outcome"] == "unfinished").all(), never
    info = json.loads((run.report_dir / "run.json").read_text())
    kernel = connected["stages_from"] == "kernel"
    if "off" in option:
        assert info["kernel_trace"]["status"] == "unavailable: turned off (--kernel-trace off)"
        assert not kernel.any() and not (run.report_dir / "kernel_connections.csv").exists()
    elif info["kernel_trace"]["status"] == "measured":
        assert kernel.mean() > 0.9, connected["stages_from"].value_counts()  # a connect the stop cut short: none
        assert info["kernel_trace"]["lost_events"] == 0
    assert connected["handshake"].notna().all()
    assert connected["accept_queue"].notna().eq(kernel).all()  # the kernel's, or not measured: never guessed
    assert connected["service"].isna().all()  # the server's own stages need its log
    assert info["connections"]["server_log"] is None and info["connections"]["client"]["recorded"] == len(frame)


def test_a_foreign_blocking_server_shows_its_staircase_from_the_kernel_alone(tmp_path: Path) -> None:
    """The standard library's socketserver.TCPServer, started by --server-cmd, keeps no log of its own: the
    kernel's trace alone gives each connection's accept-queue wait.  With SLEEP 100 ms and 5 connect-per-
    request users arriving at once, the first five wait 0, 100, 200, 300, 400 ms; after that each new
    connection queues behind the other four: about 400 ms."""
    from loadtest.measure.tracer import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    script = Path(__file__).parent.parent / "benchmarks" / "reference_servers.py"
    command = f"stdlib-tcpserver={sys.executable} {script} tcpserver --port {{port}}"
    args = ("ConnectPerRequestUser", "--server-cmd", command, "--op", "SLEEP", "--sleep-ms", "100")
    run = run_locust(tmp_path, *args, users=5, seconds=3, page=True)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads((run.report_dir / "run.json").read_text())
    assert info["kernel_trace"]["status"] == "measured" and info["kernel_trace"]["lost_events"] == 0
    frame = pd.read_csv(run.report_dir / "connections.csv", low_memory=False)
    frame = frame[frame["connected"] == 1].sort_values("connect_start").reset_index(drop=True)
    assert (frame["join"] == "no server log").all() and (frame["stages_from"] == "kernel").all()
    first = frame["accept_queue"].head(5).sort_values().reset_index(drop=True)
    assert max(staircase(first, 100)) <= 20, first.tolist()
    steady = frame["accept_queue"].iloc[10:].dropna()  # accepted by the window's close
    assert len(steady) >= 10 and abs(steady.median() - 400) <= 30, steady.tolist()
    assert frame["service"].isna().all() and frame["server_unknown"].notna().any()  # no log: not measured
    with (run.report_dir / "summary.csv").open() as f:
        row = next(csv.DictReader(f))
    assert row["kernel_trace"].startswith("measured: stages up to accept() from the kernel"), row["kernel_trace"]
    assert abs(float(row["accept_queue_wait_p50_ms"]) - 400) <= 30, row["accept_queue_wait_p50_ms"]


def test_a_listener_socklab_did_not_start_gets_the_kernels_stages_too(tmp_path: Path) -> None:
    """--host tcp://127.0.0.1:P, a blocking server started by someone else: 3 connect-per-request users and
    SLEEP 50 ms; each connection waits for the other two in the accept queue, about 100 ms, and the kernel
    alone says so; the monitor, by the port alone, sees those two in the queue."""
    from loadtest.measure.tracer import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    script = Path(__file__).parent.parent / "benchmarks" / "reference_servers.py"
    server = subprocess.Popen(
        [sys.executable, str(script), "tcpserver", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        args = ("ConnectPerRequestUser", "--host", f"tcp://127.0.0.1:{port}", "--op", "SLEEP", "--sleep-ms", "50")
        run = run_locust(tmp_path, *args, users=3, seconds=2, page=True)
    finally:
        server.terminate()
        server.wait(10)
    assert run.returncode == 0, run.stderr[-2000:]
    with (run.report_dir / "summary.csv").open() as f:
        row = next(csv.DictReader(f))
    assert row["kernel_trace"].startswith("measured: stages up to accept() from the kernel"), row["kernel_trace"]
    assert abs(float(row["accept_queue_wait_p50_ms"]) - 100) <= 15, row["accept_queue_wait_p50_ms"]
    # The monitor watched its port, not its process (no --server-pid): 2 wait while 1 is served; no CPU figure
    assert row["peak_accept_queue"] == "2" and row["peak_established"] == "3", row
    assert row["server_cpu_us_per_request"] == "" and row["peak_rss_bytes"] == "", row
    # No server log: who closed first is the kernel's account (the client, after its reply), not left blank.
    frame = pd.read_csv(run.report_dir / "connections.csv", low_memory=False)
    ended = frame[(frame["connected"] == 1) & (frame["teardown"] != STOPPED_BY_THE_RUN)]["teardown"]
    assert len(ended) >= 10 and ended.str.startswith("client closed first").all(), ended.value_counts()
