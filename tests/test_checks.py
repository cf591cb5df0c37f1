"""The self-check: each invariant fed figures that obey it (pass) and figures that break it (fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadtest.report.load import PER_SECOND, RunData
from loadtest.report.rules import checks
from loadtest.report.rules.stages import WINDOW_STAGES


def run_of(**kw: Any) -> RunData:
    info = {
        "load_processes": [{"requests": 100, "failures": 0}],
        "window": {"start": 0.0, "stop": 10.0},
        **kw.pop("info", {}),
    }
    users = kw.pop(
        "users",
        pd.DataFrame({"user_id": ["a", "b"], "requests": [60, 40], "failures": [0, 0], "longest_wait_ms": [1.0, 1.0]}),
    )
    per_second = kw.pop("per_second", pd.DataFrame([("ECHO", "p", 1, 100)], columns=PER_SECOND))
    return RunData(
        Path("."),
        info,
        pd.DataFrame(columns=["type", "name"]),
        {},
        kw.pop("monitor", None),
        per_second,
        {},
        kw.pop("unfinished", {}),
        users,
        kw.pop("connections", None),
    )


def good_row(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "requests": 100,
        "users": 2,
        "users_served": 2,
        "users_starved": 0,
        "latency_p99_ms": 20.0,
        "peak_accept_queue": 11,
        "backlog": 10,
        "connections_never_accepted": 41,
        "connections_half_open": 32,
        "listen_drops": 336,
        "listen_overflows": 336,
        "server_synack_retrans": 15,
        "kernel_synack_retrans": 15,
        "tcp_syn_retrans": 70,
        "client_syn_retrans": 55,
        "server_cpu_us_per_request": 100.0,
        "rps": 1000.0,
        "duration_s": 10.0,
        "window_user_s": 20.0,
    }
    row.update({f"window_share_{s}": 0.0 for s in WINDOW_STAGES})
    row["window_share_accept_queue"], row["window_share_later_requests"] = 0.98, 0.02
    row.update(kw)
    return row


def monitor(cpu_percent: float) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": [float(t) for t in range(11)], "server_cpu_percent": [cpu_percent] * 11})


def verdict_of(name: str, run: RunData, row: dict[str, Any]) -> str:
    return {c.name: c for c in checks.evaluate(run, row)}[name].status


BROKEN: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (check, what the run is given, what the row is given) — each breaks exactly that invariant
    (
        "requests_agree",
        {
            "users": pd.DataFrame(
                {"user_id": ["a", "b"], "requests": [59, 40], "failures": [0, 0], "longest_wait_ms": [1.0, 1.0]}
            )
        },
        {},
    ),  # one short per user: a stall
    ("users_add_up", {}, {"users_served": 1, "users_starved": 0}),
    ("shares_add_to_1", {}, {"window_share_handshake": 0.75}),  # 175 %
    ("no_time_counted_twice", {}, {"window_user_s": 20.66}),  # stages overlapping past 2 users × 10 s
    ("no_stage_negative", {}, {"window_share_service": -0.1, "window_share_accept_queue": 1.08}),
    ("accept_queue_within_backlog", {}, {"peak_accept_queue": 12}),
    ("unaccepted_fit_the_queue", {}, {"connections_half_open": 0}),  # 41 "in the accept queue" at backlog 10
    ("p99_not_an_in_flight_age", {"unfinished": {("ECHO", "p"): [20_010]}}, {}),  # p99 = a stalled request's age
    ("listen_drops_split", {}, {"listen_drops": 300}),
    ("synack_split_not_negative", {}, {"server_synack_retrans": -3}),
    ("kernel_synacks_add_up", {}, {"kernel_synack_retrans": 14}),  # one re-send traced to no connection
    ("cpu_adds_up", {"monitor": monitor(30.0)}, {}),  # 100 µs × 1,000/s is 10 %, not 30 %
]


@pytest.mark.parametrize(("name", "run_kw", "row_kw"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_invariant_fails_on_figures_that_break_it(
    name: str, run_kw: dict[str, Any], row_kw: dict[str, Any]
) -> None:
    assert verdict_of(name, run_of(monitor=monitor(10.0)), good_row()) == "pass"
    assert verdict_of(name, run_of(**{"monitor": monitor(10.0), **run_kw}), good_row(**row_kw)) == "fail"


def test_every_declared_invariant_is_tested_and_there_are_at_least_eight() -> None:
    declared = {name for name, _, _ in checks.RULES}
    assert declared == {b[0] for b in BROKEN} and len(declared) >= 8


def test_a_check_with_nothing_to_compare_is_na_never_a_pass() -> None:
    verdicts = checks.evaluate(run_of(users=None, per_second=pd.DataFrame(columns=PER_SECOND)), {})
    assert {c.status for c in verdicts} == {"n/a"}


def test_checks_csv_and_the_red_box(tmp_path: Path) -> None:
    verdicts = checks.evaluate(run_of(monitor=monitor(10.0)), good_row(window_share_handshake=0.75))
    path = checks.write(tmp_path, verdicts)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["check", "holds", "status", "figures"] and len(frame) == len(checks.RULES)
    failed = checks.failed_lines(verdicts, "echo-blocking-u50")
    assert failed == ["echo-blocking-u50: self-check failed: shares_add_to_1 (Σ window shares 1.7500)"]
    assert "Self-check failed" in checks.box_html(failed) and checks.box_html([]) == ""


def test_a_p99_that_only_happens_to_equal_an_age_is_no_stall() -> None:
    from loadtest.client.latency import new_histogram

    hist = new_histogram()
    for _ in range(100):
        hist.record_value(20_000)  # every finished request took 20 ms
    run = run_of(monitor=monitor(10.0), unfinished={("ECHO", "p"): [20_010]})
    run.histograms[("ECHO", "p")] = hist
    assert verdict_of("p99_not_an_in_flight_age", run, good_row()) == "pass"
    stalled = run_of(monitor=monitor(10.0), unfinished={("ECHO", "p"): [55_000] * 5})
    stalled.histograms[("ECHO", "p")] = hist
    assert verdict_of("p99_not_an_in_flight_age", stalled, good_row(latency_p99_ms=55.0)) == "fail"
