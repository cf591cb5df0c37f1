"""The load generator's own path: Locust's statistics fed in bulk, pipelining, capacity from server CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.test_locust import run_locust


def summary(run_dir: Path) -> dict[str, str]:
    with (run_dir / "summary.csv").open() as f:
        return next(csv.DictReader(f))


def bucket_width_ms(ms: float) -> float:
    """Locust keeps response times rounded: whole ms under 100 ms, tens under 1 s, hundreds under 10 s."""
    return 1.0 if ms < 100 else 10.0 if ms < 1000 else 100.0


@pytest.mark.parametrize("events", [[], ["--request-events"]], ids=["in-bulk", "an-event-each"])
def test_locusts_statistics_are_socklabs_counts(tmp_path: Path, events: list[str]) -> None:
    # SLEEP 20 ms on threaded: response times Locust can tell apart, and a CONNECT per user.
    run = run_locust(tmp_path, "--server", "threaded", "--op", "SLEEP", "--sleep-ms", "20", *events, users=5,
                     seconds=3)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    ours, locust = run.latency(), run.locust_stats()
    for key in (("SLEEP", "persistent"), ("CONNECT", "connect")):
        assert int(locust[key]["Request Count"]) == int(ours[key]["count"]) + int(ours[key]["failures"]) > 0, key
    sleep = ours[("SLEEP", "persistent")]
    for theirs, mine in (("50%", "p50_us"), ("90%", "p90_us"), ("99%", "p99_us")):
        ms = int(sleep[mine]) / 1000
        assert abs(float(locust[("SLEEP", "persistent")][theirs]) - ms) <= bucket_width_ms(ms), (theirs, ms)
    total = locust[("", "Aggregated")]
    assert int(total["Request Count"]) == sum(int(r["Request Count"]) for k, r in locust.items() if k[0])
    assert float(total["Average Response Time"]) > 0 and float(total["Requests/s"]) > 0


def test_a_pipeline_keeps_n_in_flight_and_each_waits_behind_those_ahead(tmp_path: Path) -> None:
    # One connection, SLEEP 10 ms served one after another: with 4 in flight each request's own latency,
    # send → last reply byte, is the 3 ahead of it plus its own: 40 ms; the rate is the server's, 100/s.
    run = run_locust(tmp_path, "--server", "threaded", "--op", "SLEEP", "--sleep-ms", "10", "--pipeline", "4",
                     users=1, seconds=3)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    row = summary(run.report_dir)
    assert row["pipeline"] == "4" and run.manifest()["options"]["pipeline"] == 4
    assert 39 <= float(row["latency_p50_ms"]) <= 44, row["latency_p50_ms"]
    assert 85 <= float(row["rps"]) <= 101, row["rps"]
    assert int(row["failures"]) == 0


def test_a_pipeline_with_an_open_loop_is_refused(tmp_path: Path) -> None:
    run = run_locust(tmp_path, "--pipeline", "4", "--arrival-rate", "100", seconds=1)
    assert run.returncode == 2 and "--pipeline and --arrival-rate" in run.stderr


def test_the_capacity_estimate_meets_the_measure_where_the_server_is_cpu_bound(tmp_path: Path) -> None:
    # WORK 2 ms on one event loop: one core, all of it the server's work — the estimate from its CPU per
    # request is what it achieved.
    run = run_locust(tmp_path, "--server", "selectors", "--op", "WORK", "--work-us", "2000", users=10, seconds=3)
    assert run.returncode == 0, run.stderr[-2000:]
    row = summary(run.report_dir)
    estimate, measured = float(row["server_capacity_rps_per_core"]), float(row["rps"])
    assert row["client_bound"] == "False"
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)
