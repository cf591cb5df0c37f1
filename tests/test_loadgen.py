"""The load generator's own path: Locust's statistics fed in bulk, pipelining, capacity from server CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadtest.client.latency import read_histograms
from tests.helpers import run_locust


def summary(run_dir: Path) -> dict[str, str]:
    with (run_dir / "summary.csv").open() as f:
        return next(csv.DictReader(f))


def bucket_width_ms(ms: float) -> float:
    """Locust keeps response times rounded: whole ms under 100 ms, tens under 1 s, hundreds under 10 s."""
    return 1.0 if ms < 100 else 10.0 if ms < 1000 else 100.0


def locust_percentile_us(hist: HdrHistogram, fraction: float) -> float:
    """locust.stats.calculate_response_time_percentile on an HdrHistogram: counting down from the top, the
    first value at which no more than int(n × fraction) samples are left below."""
    total, at_or_above = hist.get_total_count(), 0
    values = [(v.value_iterated_to, v.count_at_value_iterated_to) for v in hist.get_recorded_iterator()]
    for value, count in reversed(values):
        at_or_above += count
        if total - at_or_above <= int(total * fraction):
            return hist.get_highest_equivalent_value(value)
    return 0.0


@pytest.mark.parametrize("events", [[], ["--request-events"]], ids=["in-bulk", "an-event-each"])
def test_locusts_statistics_are_socklabs_counts(tmp_path: Path, events: list[str]) -> None:
    # SLEEP 20 ms on threaded: response times Locust can tell apart, and a CONNECT per user.
    run = run_locust(tmp_path, "--server", "threaded", "--op", "SLEEP", "--sleep-ms", "20", *events, users=5, seconds=3)
    assert run.returncode == 0, run.stderr[-2000:]
    ours, locust = run.latency(), run.locust_stats()
    for key in (("SLEEP", "persistent"), ("CONNECT", "connect")):
        assert int(locust[key]["Request Count"]) == int(ours[key]["count"]) + int(ours[key]["failures"]) > 0, key
    # Locust's percentile of the same samples: its rank differs from HdrHistogram's by one for some counts,
    # which in a loaded tail can be many ms (CI once saw it fail), so its own rank is taken on our histogram.
    hist = read_histograms(run.report_dir / "socklab_latency_hist.json")[("SLEEP", "persistent")]
    for theirs, fraction in (("50%", 0.5), ("90%", 0.9), ("99%", 0.99)):
        ms = locust_percentile_us(hist, fraction) / 1000
        assert abs(float(locust[("SLEEP", "persistent")][theirs]) - ms) <= bucket_width_ms(ms), (theirs, ms)
    total = locust[("", "Aggregated")]
    assert int(total["Request Count"]) == sum(int(r["Request Count"]) for k, r in locust.items() if k[0])
    assert float(total["Average Response Time"]) > 0 and float(total["Requests/s"]) > 0


def test_a_pipeline_keeps_n_in_flight_and_each_waits_behind_those_ahead(tmp_path: Path) -> None:
    # One connection, SLEEP 10 ms served one after another: with 4 in flight each request's own latency,
    # send → last reply byte, is the 3 ahead of it plus its own: 40 ms; the rate is the server's, 100/s.
    pipelined = ("--server", "threaded", "--op", "SLEEP", "--sleep-ms", "10", "--pipeline", "4")
    run = run_locust(tmp_path, *pipelined, users=1, seconds=3, page=True)
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
    run = run_locust(
        tmp_path, "--server", "selectors", "--op", "WORK", "--work-us", "2000", users=10, seconds=3, page=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    row = summary(run.report_dir)
    estimate, measured = float(row["server_capacity_rps_per_core"]), float(row["rps"])
    assert row["client_bound"] == "False"
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)


def failures_by_class(run_dir: Path) -> dict[str, int]:
    import json

    out: dict[str, int] = {}
    for f in json.loads((run_dir / "run.json").read_text())["failures"]:
        out[f["class"]] = out.get(f["class"], 0) + int(f["occurrences"])
    return out


def test_a_late_reply_fails_at_the_reply_timeout_on_the_hot_loop(tmp_path: Path) -> None:
    # No socket timeout on the hot path (loadtest.client.deadlines): the watchdog must still end a wait at the
    # bound, within its tick.  SLEEP 1.5 s against a 0.4 s bound: every request fails "read timeout".
    run = run_locust(
        tmp_path,
        "--server",
        "threaded",
        "--op",
        "SLEEP",
        "--sleep-ms",
        "1500",
        "--reply-timeout",
        "0.4",
        users=2,
        seconds=3,
    )
    assert run.returncode == 1, run.stderr[-2000:]  # every request failed
    assert set(failures_by_class(run.report_dir)) == {"read timeout"}, failures_by_class(run.report_dir)
    stats = run.locust_stats()[("SLEEP", "persistent")]
    assert int(stats["Failure Count"]) >= 6 and int(stats["Request Count"]) == int(stats["Failure Count"])
    # Each failed after 0.4 s plus at most a tick of the watchdog (0.1 s), never at the SLEEP's 1.5 s.
    assert float(stats["Min Response Time"]) >= 400 and float(stats["Max Response Time"]) <= 560, stats


def test_a_handshake_that_never_completes_fails_at_the_connect_timeout(tmp_path: Path) -> None:
    # blocking, backlog 1, SLEEP 2.5 s: one client is served, two wait in the full accept queue, and the
    # other SYNs are dropped — their connect() must end at the 0.5 s bound, not on the SYN retry schedule.
    run = run_locust(
        tmp_path,
        "ConnectPerRequestUser",
        "--server",
        "blocking",
        "--backlog",
        "1",
        "--op",
        "SLEEP",
        "--sleep-ms",
        "2500",
        "--connect-timeout",
        "0.5",
        "--reply-timeout",
        "10",
        users=8,
        seconds=2,
    )
    failures = failures_by_class(run.report_dir)
    assert failures.get("connect timeout", 0) >= 5, failures
    connect = run.locust_stats()[("CONNECT", "connect")]
    assert float(connect["Max Response Time"]) <= 660, connect  # 0.5 s and a tick; not the SYN retry at 1 s
