"""Reports from a recorded run (tests/fixtures, the real output of a short run) and from live runs."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadtest.client.latency import CSV_COLUMNS
from loadtest.declare.charts import CHARTS
from loadtest.measure.monitor import COLUMNS as MONITOR_COLUMNS
from loadtest.report import SUMMARY_COLUMNS, build_compare, build_run_report
from loadtest.report.rules.summary import CPU_TICK_S, MIN_CPU_TICKS, tick_rounded
from tests.browser import chromium, render

FIXTURE = Path(__file__).parent / "fixtures" / "blocking_conn_storm"
CHART_IDS = ["throughput", "latency", "users", *(c.key for c in CHARTS), "connect-time"]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "blocking_conn_storm"
    shutil.copytree(FIXTURE, target)
    return target


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_summary_numbers_by_hand(run_dir: Path) -> None:
    summary_path, _ = build_run_report(run_dir)
    (row,) = read_rows(summary_path)
    info = json.loads((run_dir / "run.json").read_text())
    latency = {r["type"]: r for r in read_rows(run_dir / "socklab_latency.csv") if r["measure"] == "latency"}
    monitor = read_rows(run_dir / "monitor.csv")
    echo, connect = latency["ECHO"], latency["CONNECT"]

    # What the run was: a blocking server, backlog 2, 10 connect-per-request users.
    assert (row["design"], row["user_class"], row["op"], row["users"]) == (
        "blocking",
        "ConnectPerRequestUser",
        "ECHO",
        "10",
    )
    seconds = info["window"]["seconds"]
    assert float(row["duration_s"]) == round(seconds, 3)
    assert int(row["requests"]) == int(echo["count"]) + int(echo["failures"])
    assert float(row["rps"]) == round(int(echo["count"]) / seconds, 1)
    # Percentiles: over what finished (the recorded histogram) and what was still in flight at the
    # window's close (each at its age), computed here straight from the recorded files.
    recorded = {h["type"]: h for h in json.loads((run_dir / "socklab_latency_hist.json").read_text())["histograms"]}

    def with_unfinished(kind: str) -> HdrHistogram:
        hist = HdrHistogram.decode(recorded[kind]["hdr"].encode())
        for age in recorded[kind]["unfinished_ages_us"]:
            hist.record_value(age)
        return hist

    ops, connects, first = with_unfinished("ECHO"), with_unfinished("CONNECT"), with_unfinished("FIRST_REPLY")
    lower = row["lower_bound_columns"].split(";")

    def expected(column: str, hist: HdrHistogram, us: int) -> float:
        # A lower bound reads its bucket's lowest value (the recorded age is not below it); others its highest.
        return (hist.get_lowest_equivalent_value(us) if column in lower else us) / 1000

    assert float(row["latency_p50_ms"]) == expected("latency_p50_ms", ops, ops.get_value_at_percentile(50))
    assert float(row["latency_p99_ms"]) == expected("latency_p99_ms", ops, ops.get_value_at_percentile(99))
    assert float(row["latency_max_ms"]) == expected("latency_max_ms", ops, ops.get_max_value())
    assert float(row["connect_p99_ms"]) == expected("connect_p99_ms", connects, connects.get_value_at_percentile(99))
    assert float(row["first_reply_p99_ms"]) == expected("first_reply_p99_ms", first, first.get_value_at_percentile(99))
    assert (
        "latency_max_ms" in lower
        and float(row["latency_max_ms"]) <= max(recorded["ECHO"]["unfinished_ages_us"] + [ops.get_max_value()]) / 1000
    )
    # Unfinished work counted, and the maximum it could still raise marked as a lower bound.
    unfinished_connects = len(recorded["CONNECT"]["unfinished_ages_us"])
    assert int(row["unfinished_connects"]) == unfinished_connects == int(connect["unfinished"]) > 0
    assert int(row["unfinished_requests"]) == len(recorded["ECHO"]["unfinished_ages_us"]) == int(echo["unfinished"])
    assert "connect_max_ms" not in row and "first_reply_max_ms" in row["lower_bound_columns"].split(";")
    # Per-user figures from socklab_users.csv, by hand.
    per_user = [int(u["requests"]) for u in read_rows(run_dir / "socklab_users.csv")]
    assert len(per_user) == 10
    assert int(row["users_served"]) == sum(n > 0 for n in per_user)
    assert int(row["users_starved"]) == sum(n == 0 for n in per_user)
    assert float(row["fairness"]) == pytest.approx(sum(per_user) ** 2 / (10 * sum(n * n for n in per_user)), abs=1e-4)
    assert int(row["tcp_syn_retrans"]) == int(monitor[-1]["TcpExt_TCPSynRetrans"])

    last = monitor[-1]
    assert int(row["listen_overflows"]) == int(last["TcpExt_ListenOverflows"]) > 0
    assert int(row["listen_drops"]) == int(last["TcpExt_ListenDrops"])
    assert int(row["backlog"]) == 2  # the known truth: --backlog 2
    assert int(row["peak_accept_queue"]) == max(int(r["accept_queue"]) for r in monitor) == 3  # B + 1
    assert int(row["peak_time_wait"]) == max(int(r["server_TIME_WAIT"]) + int(r["client_TIME_WAIT"]) for r in monitor)
    assert int(row["peak_established"]) == max(int(r["server_ESTABLISHED"]) for r in monitor)
    # Server CPU at the window's edges, interpolated linearly between the samples around them.
    times = [float(r["timestamp"]) for r in monitor]
    cpu = [float(r["server_cpu_user_s"]) + float(r["server_cpu_system_s"]) for r in monitor]

    def cpu_at(t: float) -> float:
        if t <= times[0]:
            return cpu[0]
        if t >= times[-1]:
            return cpu[-1]
        k = next(i for i in range(1, len(times)) if times[i] >= t)
        return cpu[k - 1] + (cpu[k] - cpu[k - 1]) * (t - times[k - 1]) / (times[k] - times[k - 1])

    spent = cpu_at(info["window"]["stop"]) - cpu_at(info["window"]["start"])
    # … to the digits one CPU tick allows (the rule: tests/test_figures.py), so within that tick.
    assert spent >= MIN_CPU_TICKS * CPU_TICK_S
    cpu_us = float(row["server_cpu_us_per_request"])
    assert cpu_us == pytest.approx(tick_rounded(spent, int(echo["count"])))
    assert cpu_us == pytest.approx(spent / int(echo["count"]) * 1e6, rel=CPU_TICK_S / spent)
    # Peaks and the load generator's CPU are the window's: samples after its close are not (item 8).
    window = [r for r in monitor if info["window"]["start"] <= float(r["timestamp"]) <= info["window"]["stop"]]
    assert int(row["peak_rss_bytes"]) == max(int(r["server_rss_bytes"]) for r in window)
    assert int(row["peak_threads"]) == 1  # one thread: the blocking design
    median = statistics.median(float(r["loadgen_cpu_percent_max"]) for r in window)
    assert float(row["loadgen_median_cpu_percent"]) == pytest.approx(median)
    assert row["client_bound"] == str(median >= 90)


def test_csv_schemas(run_dir: Path) -> None:
    summary_path, _ = build_run_report(run_dir)
    with summary_path.open() as f:
        assert next(csv.reader(f)) == SUMMARY_COLUMNS
    with (run_dir / "monitor.csv").open() as f:
        assert next(csv.reader(f)) == MONITOR_COLUMNS
    with (run_dir / "socklab_latency.csv").open() as f:
        assert next(csv.reader(f)) == CSV_COLUMNS


def test_findings_say_what_happened(run_dir: Path) -> None:
    _, page = build_run_report(run_dir)
    text = page.read_text()
    assert re.search(
        r"blocking: in the window, \d[\d,]* packets dropped at a full accept queue at backlog 2 \(ListenOverflows", text
    )
    assert "TIME_WAIT at peak" in text
    assert "client-bound" in text


@pytest.mark.skipif(chromium() is None, reason="chromium not installed")
def test_report_renders_every_chart_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    _, page = build_run_report(run_dir)
    assert "cdn" not in page.read_text().lower()  # offline: plotly.min.js sits beside the page
    assert (run_dir / "plotly.min.js").stat().st_size > 1_000_000
    shot = tmp_path / "report.png"
    dom, console = render(page, shot)
    for chart in CHART_IDS:
        block = dom.split(f'id="{chart}"', 1)
        assert len(block) == 2, f"chart {chart} missing"
        assert "main-svg" in block[1].split('class="chart"', 1)[0], f"chart {chart} did not draw"
    errors = [line for line in console if "error" in line.lower() or "uncaught" in line.lower()]
    assert not errors, errors
    assert shot.stat().st_size > 50_000


def test_compare_report(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "threaded_run"
    shutil.copytree(run_dir, other)
    info = json.loads((other / "run.json").read_text())
    info.update(run_id="threaded_run", design="threaded", users=20)
    (other / "run.json").write_text(json.dumps(info))
    out = tmp_path / "cmp"
    summary_path, page = build_compare([run_dir, other], out)
    rows = read_rows(summary_path)
    assert [(r["design"], r["users"]) for r in rows] == [("blocking", "10"), ("threaded", "20")]
    assert (out / "plotly.min.js").exists()
    if chromium():
        dom, console = render(page)
        assert dom.count("main-svg") >= 4
        assert not [line for line in console if "error" in line.lower()]


def test_socklab_report_command(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "summary.csv").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "report", str(run_dir)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (run_dir / "summary.csv").exists() and (run_dir / "report.html").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "not a run folder" in bad.stderr


def test_throughput_is_per_second_inside_the_window(run_dir: Path) -> None:
    # Known counts per second: a warm-up second before the window (Locust's counts are reset when the
    # warm-up ends, so such a second is the warm-up's), a second with nothing done (a stall is a 0, not a
    # gap), and partial seconds at both edges (divided by the part the window covers; under half left out).
    # A 2 s compare cell once had no point at all: Locust's history CSV held a single row in its window.
    from loadtest.report.charts import throughput_series
    from loadtest.report.load import load_run

    info = json.loads((run_dir / "run.json").read_text())
    info["window"].update(start=1000.25, stop=1004.4, seconds=4.15)
    (run_dir / "run.json").write_text(json.dumps(info))
    counts = {"999": 9000, "1000": 600, "1001": 800, "1003": 900, "1004": 700}  # 1002: nothing done
    (run_dir / "locust_stats.json").write_text(
        json.dumps(
            [
                {"name": "connect-per-request", "method": "ECHO", "num_reqs_per_sec": counts},
                {"name": "connect", "method": "CONNECT", "num_reqs_per_sec": {"1001": 5}},
            ]
        )
    )
    series = throughput_series(load_run(run_dir))
    assert list(series["series"].unique()) == ["ECHO connect-per-request"]  # ops only, not the connects
    assert series["t"].tolist() == [0.375, 1.25, 2.25, 3.25]  # 1004 is covered 0.4 s: left out
    assert series["rps"].tolist() == [600 / 0.75, 800, 0, 900]
