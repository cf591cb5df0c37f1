"""The whole story under overload: every user counted, every unfinished wait shown, open-loop arrivals.

Real Locust runs against real servers; the counts are checked against what the kernel shows
(the monitor's SYN_SENT sockets) and against known truths (a one-at-a-time server serves one
persistent user; a stopped server delays every arrival scheduled meanwhile).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.hosts.isolate import can_isolate
from loadtest.report import build_compare
from tests.helpers import LOCUSTFILE, locust_command, run_locust

ISOLATION, WHY_NOT = can_isolate()


def summary_row(report_dir: Path) -> dict[str, str]:
    with (report_dir / "summary.csv").open() as f:
        return next(csv.DictReader(f))


def page_text(report_dir: Path) -> str:
    return (report_dir / "report.html").read_text()


def test_one_at_a_time_server_starves_all_but_one_persistent_user(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "t").mkdir()
    blocking = run_locust(tmp_path / "b", "--server", "blocking", users=10, seconds=3, page=True)
    assert blocking.returncode == 0, blocking.stderr[-2000:]
    row = summary_row(blocking.report_dir)
    assert (int(row["users_served"]), int(row["users_starved"])) == (1, 9)
    assert float(row["fairness"]) == pytest.approx(0.1, abs=0.01)  # Jain's index: one user got everything
    assert float(row["longest_user_wait_ms"]) >= 0.9 * float(row["duration_s"]) * 1000
    assert int(row["unfinished_requests"]) >= 9  # each starved user's first request, never answered
    assert "1 of 10 users was served; 9 completed no request" in page_text(blocking.report_dir)
    assert "but only 1 of 10 served" in page_text(blocking.report_dir)
    with (blocking.report_dir / "socklab_users.csv").open() as f:
        users = list(csv.DictReader(f))
    assert len(users) == 10 and sorted(int(u["requests"]) > 0 for u in users) == [False] * 9 + [True]

    threaded = run_locust(tmp_path / "t", "--server", "threaded", users=10, seconds=3, page=True)
    assert threaded.returncode == 0, threaded.stderr[-2000:]
    row = summary_row(threaded.report_dir)
    assert (int(row["users_served"]), int(row["users_starved"])) == (10, 0)
    assert float(row["fairness"]) > 0.9

    # The comparison never ranks a design that starved users above one that served them all, and names
    # the leader's caveats in the same sentence.
    _, page = build_compare([blocking.report_dir, threaded.report_dir], tmp_path / "cmp")
    text = page.read_text()
    leader = text.split("<ol class='headlines'><li>", 1)[1].split("</li>", 1)[0]
    assert leader.startswith("threaded leads"), leader
    with (tmp_path / "cmp" / "summary.csv").open() as f:
        rows = {r["design"]: r for r in csv.DictReader(f)}
    if rows["threaded"]["client_bound"] == "True":
        assert "load generator" in leader, leader
    assert "blocking serves one connection at a time: 9 of 10 users got no reply in the whole window" in text
    assert "starved 9/10" in text


@pytest.mark.skipif(not ISOLATION, reason=f"no private network namespace here: {WHY_NOT}")
def test_connection_storm_unfinished_connects_match_the_kernels_syn_sent(tmp_path: Path) -> None:
    report = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.hosts.isolate",
            "--",
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "ConnectPerRequestUser",
            "--headless",
            "-u",
            "50",
            "-r",
            "50",
            "-t",
            "5s",
            "--server",
            "blocking",
            "--backlog",
            "10",
            "--monitor-interval",
            "0.25",
            "--report-dir",
            str(report),
            "--only-summary",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    row = summary_row(report)
    assert row["counters_scope"] == "isolated"
    assert int(row["unfinished_connects"]) + int(row["users_starved"]) > 0
    window = json.loads((report / "run.json").read_text())["window"]
    with (report / "monitor.csv").open() as f:
        before_close = [r for r in csv.DictReader(f) if float(r["timestamp"]) <= window["stop"]]
    syn_sent = int(before_close[-1]["client_SYN_SENT"])  # the kernel's count, a moment before the close
    assert abs(syn_sent - int(row["unfinished_connects"])) <= 2, (syn_sent, row["unfinished_connects"])
    # Named for what they count.
    text = page_text(report)
    assert "packets dropped at a full accept queue" in text and "SYNs dropped" not in text
    assert int(row["tcp_syn_retrans"]) > 0
    # The clients measure their own SYN retransmissions; never more than the kernel counted for both sides.
    assert 0 < int(row["client_syn_retrans"]) <= int(row["tcp_syn_retrans"])
    assert int(row["server_synack_retrans"]) >= 0 and int(row["connections_syn_retried"]) > 0


def test_open_loop_counts_latency_from_the_intended_start(tmp_path: Path) -> None:
    report = tmp_path / "run"
    proc = subprocess.Popen(
        locust_command(
            10,
            6,
            "--server",
            "threaded",
            "--op",
            "SLEEP",
            "--sleep-ms",
            "1",
            "--arrival-rate",
            "200",
            "--report-dir",
            str(report),
            "--only-summary",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while not (report / "run.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    server_pid = json.loads((report / "run.json").read_text())["server"]["pid"]
    time.sleep(2)
    os.kill(server_pid, signal.SIGSTOP)  # the server stalls; the schedule does not
    time.sleep(2)
    os.kill(server_pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    row = summary_row(report)
    latency_p99, service_p99 = float(row["latency_p99_ms"]), float(row["service_p99_ms"])
    assert latency_p99 >= 1000, row
    assert service_p99 * 10 <= latency_p99, row
    assert float(row["offered_rps"]) == 200
    assert abs(float(row["rps"]) - 200) <= 20, row  # the schedule catches up after the stall
    assert int(row["late_arrivals"]) > 0 and float(row["late_lag_s"]) > 1
    with (report / "socklab_latency.csv").open() as f:
        measures = {(r["type"], r["measure"]) for r in csv.DictReader(f)}
    assert {("SLEEP", "latency"), ("SLEEP", "service")} <= measures


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"), reason="needs root, unshare and ip"
)
def test_plain_unshare_net_is_labelled_isolated(tmp_path: Path) -> None:
    report = tmp_path / "run"
    locust = locust_command(
        2,
        2,
        "--report-dir",
        str(report),
        "--only-summary",
    )
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *locust],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "SOCKLAB_PRIVATE_NETNS"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((report / "run.json").read_text())["counters_scope"] == "isolated"
    assert summary_row(report)["counters_scope"] == "isolated"


def test_final_locust_csv_agrees_with_the_final_counts(tmp_path: Path) -> None:
    run = run_locust(tmp_path, "ConnectPerRequestUser", "--server", "selectors", users=5, seconds=3, page=True)
    assert run.returncode == 0, run.stderr[-2000:]
    stats = run.locust_stats()
    latency = run.latency()
    for kind, name in (("CONNECT", "connect"), ("ECHO", "connect-per-request")):
        ours = latency[(kind, name)]
        assert int(stats[(kind, name)]["Request Count"]) == int(ours["count"]) + int(ours["failures"]), kind
    info = json.loads((run.report_dir / "run.json").read_text())
    assert int(stats[("", "Aggregated")]["Request Count"]) == info["locust"]["requests"]
    with (run.report_dir / "locust_stats.json").open() as f:
        assert sum(e["num_requests"] for e in json.load(f)) == info["locust"]["requests"]
    # "requests" means ops in every table: the load processes' add up to the summary's, not to
    # Locust's total, which also counts the CONNECT events (shown apart as locust_events).
    with (run.report_dir / "socklab_load_processes.csv").open() as f:
        processes = list(csv.DictReader(f))
    row = summary_row(run.report_dir)
    assert sum(int(p["requests"]) for p in processes) == int(row["requests"]) > 0
    assert sum(int(p["locust_events"]) for p in processes) == info["locust"]["requests"] > int(row["requests"])


def _users_csv(report_dir: Path) -> list[dict[str, str]]:
    with (report_dir / "socklab_users.csv").open() as f:
        return list(csv.DictReader(f))


def test_every_user_is_counted_once_across_forked_workers(tmp_path: Path) -> None:
    # blocking serves one persistent connection for the whole window: 1 served, 5 starved, and the
    # six users live in two forked workers, whose ids once collided (the pid taken before the fork).
    run = run_locust(tmp_path, "--processes", "2", "--server", "blocking", users=6, seconds=3, timeout=90, page=True)
    assert run.returncode == 0, run.stderr[-2000:]
    users = _users_csv(run.report_dir)
    assert len(users) == len({u["user_id"] for u in users}) == 6, users
    assert len({u["user_id"].split(".")[0] for u in users}) == 2  # two load processes
    row = summary_row(run.report_dir)
    assert (int(row["users_served"]), int(row["users_starved"])) == (1, 5)
    assert int(row["unfinished_requests"]) >= 5  # each starved user's first request, from both workers


def test_every_user_is_counted_once_with_a_master_and_two_workers(tmp_path: Path) -> None:
    from loadtest.matrix.processes import free_port

    port = str(free_port())
    report = tmp_path / "run"
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    master = subprocess.Popen(
        [
            *base,
            "IdleUser",
            "--headless",
            "--master",
            "--expect-workers",
            "2",
            "--master-bind-port",
            port,
            "-u",
            "20",
            "-r",
            "20",
            "-t",
            "3s",
            "--server",
            "selectors",
            "--idle-interval",
            "0.5",
            "--report-dir",
            str(report),
            "--only-summary",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    workers = [
        subprocess.Popen(
            [*base, "--worker", "--master-port", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    try:
        _, err = master.communicate(timeout=90)
        for w in workers:
            w.wait(30)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
    assert master.returncode == 0, err[-2000:]
    users = _users_csv(report)
    assert len(users) == len({u["user_id"] for u in users}) == 20
    row = summary_row(report)
    assert int(row["users_served"]) + int(row["users_starved"]) == 20
    assert int(row["users_served"]) == 20
