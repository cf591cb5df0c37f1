"""Every summary column is declared with its computation, and every computation has its column: the columns
computed together (a Family) return exactly the columns that declare them, a monitor column read must exist, and
the figures of a recorded run are the numbers its files say (loadtest.report.rules.summary_columns)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadtest.report import load_run, summarize
from loadtest.report.rules import server_columns, summary_columns
from loadtest.report.rules.summary import Family, FromMonitor, Reading, Summary

FIXTURE = Path(__file__).parent / "fixtures" / "blocking_conn_storm"
SUMMARY = summary_columns.SUMMARY


def families() -> list[Family]:
    """Every family the summary's modules define, whether or not a column declares it."""
    found = [v for m in (summary_columns, server_columns) for v in vars(m).values() if isinstance(v, Family)]
    return list({id(f): f for f in found}.values())


def variants(tmp_path: Path) -> list[Path]:
    """The recorded run, and the same without its monitor, its users' ledgers or its latencies."""
    out = [FIXTURE]
    for name, drop in (("no-monitor", "monitor.csv"), ("no-users", "socklab_users.csv"), ("no-latency", "socklab_la*")):
        copy = tmp_path / name
        shutil.copytree(FIXTURE, copy)
        for path in copy.glob(drop):
            path.unlink()
        out.append(copy)
    return out


def test_every_column_carries_a_computation_and_is_named_once() -> None:
    assert all(isinstance(c, Summary) and (callable(c.value) or isinstance(c.value, Family)) for c in SUMMARY)
    assert len(set(summary_columns.SUMMARY_NAMES)) == len(SUMMARY)
    assert [c.name for c in SUMMARY] == summary_columns.SUMMARY_NAMES
    with pytest.raises(ValueError, match="no monitor column"):
        FromMonitor("server_rss_byte", "max")  # a misspelt monitor column fails where it is declared


def test_each_family_computes_exactly_the_columns_that_declare_it(tmp_path: Path) -> None:
    declared = {id(f): [c.name for c in SUMMARY if c.value is f] for f in families()}
    assert all(declared.values()), "a family no column declares: a computation without its column"
    for folder in variants(tmp_path):
        reading = Reading(load_run(folder))
        for family in families():
            computed = family.compute(reading)
            expected = set(declared[id(family)]) | set(family.also)
            assert set(computed) == expected, (folder.name, sorted(set(computed) ^ expected))


def test_the_row_is_every_declared_column_and_each_is_computed(tmp_path: Path) -> None:
    for folder in variants(tmp_path):
        row = summarize(load_run(folder))
        assert list(row) == summary_columns.SUMMARY_NAMES


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def test_the_figures_are_the_numbers_the_run_files_say() -> None:
    row: dict[str, Any] = summarize(load_run(FIXTURE))
    info = json.loads((FIXTURE / "run.json").read_text())
    latency = pd.read_csv(FIXTURE / "socklab_latency.csv")
    echo = latency[latency["type"] == "ECHO"]
    users = pd.read_csv(FIXTURE / "socklab_users.csv")
    monitor = pd.read_csv(FIXTURE / "monitor.csv")
    window = info["window"]
    inside = monitor[(monitor["timestamp"] >= window["start"]) & (monitor["timestamp"] <= window["stop"])]
    successes = int(echo["count"].sum())
    assert row["duration_s"] == round(window["seconds"], 3) == 3.019
    assert row["requests"] == successes + int(echo["failures"].sum()) == 20843
    assert row["rps"] == round(successes / window["seconds"], 1) == 6904.4
    assert (row["users_served"], row["users_starved"]) == (int((users["requests"] > 0).sum()), 0) == (10, 0)
    assert row["fairness"] == round(jain(users["requests"].astype(float).tolist()), 4) == 0.7711
    assert row["longest_user_wait_ms"] == users["longest_wait_ms"].max() == 2689.45
    assert row["unfinished_connects"] == 7 and row["unfinished_requests"] == 3  # as socklab_latency.csv says
    assert row["latency_p50_ms"] == 0.284 and row["latency_p99_ms"] == 0.548  # its histogram: p50 284, p99 547 µs
    assert row["lower_bound_columns"] == "latency_max_ms;first_reply_max_ms"  # still in flight at the close
    assert row["peak_accept_queue"] == int(inside["accept_queue"].max()) == 3
    assert row["backlog"] == info["server"]["backlog"] == 2
    assert row["listen_overflows"] == int(monitor["TcpExt_ListenOverflows"].iloc[-1]) == 36
    assert row["peak_time_wait"] == int((monitor["server_TIME_WAIT"] + monitor["client_TIME_WAIT"]).max())
    assert row["counters_scope"] == info["counters_scope"] == "isolated"
    assert row["server_cpu_us_per_request"] == 60.2 and row["server_capacity_rps_per_core"] == 16600.0
    assert row["client_bound"] is True and row["loadgen_median_cpu_percent"] == 94.1
    assert math.isnan(row["server_died_at_s"]) and math.isnan(row["window_share_service"])  # no connection records


def test_without_a_monitor_the_server_figures_are_empty_not_guessed(tmp_path: Path) -> None:
    folder = variants(tmp_path)[1]
    row = summarize(load_run(folder))
    assert row["client_bound"] == "" and row["counters_scope"] == "isolated"  # run.json's, the monitor absent
    for name in ("listen_overflows", "peak_accept_queue", "server_cpu_us_per_request", "client_syn_retrans"):
        assert math.isnan(row[name]), name
    assert row["requests"] == 20843  # the clients' figures stand
