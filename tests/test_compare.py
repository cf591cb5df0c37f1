"""socklab compare end to end: real cells, real servers, private namespaces where possible."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import psutil
import pytest

from loadtest.hosts.isolate import can_isolate
from loadtest.report.rules.stages import WINDOW_STAGES
from tests.helpers import compare, ours_running, start_compare, summary

ISOLATION, WHY_NOT = can_isolate()


def test_io_wait_blocking_serializes_selectors_scales(tmp_path: Path) -> None:
    # The default lessons' four scenarios, on the two designs at their ends, at 10 users: every cell's figures
    # must pass the run's self-check (exit 4 otherwise), and io-wait must read as the lesson says.
    out = tmp_path / "cmp"
    done = compare(
        "--designs",
        "blocking,selectors",
        "--users",
        "10",
        "--scenario",
        "io-wait",
        "cpu",
        "conn-storm",
        "echo",
        "--duration",
        "1.5s",
        "--warmup",
        "0.5s",
        "--processes",
        "1",  # one load process, always: no second run of a client-bound cell here
        "--out",
        str(out),
        "--expect",
        "io-wait/selectors: rps >= 100; users_starved == 0; failures == 0",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]  # the expectation held
    # The terminal ends with the answer: the designs ranked, the headlines, then the page.
    ranked = done.stdout[done.stdout.index("io-wait: What happens when requests wait on I/O?") :]
    assert ranked.index("selectors") < ranked.index("blocking") < ranked.index("compare report:"), ranked
    assert "blocking serves one connection at a time: 9 of 10 users got no reply in the whole window" in ranked
    assert "waiting ≥ " in ranked and "unfinished 0 connects" not in done.stdout
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

    series = throughput_series(load_run(out / "io-wait-selectors-u10"))  # the seconds a 1.5 s window covers
    assert len(series) >= 1 and (series["rps"] >= 0).all(), series
    assert abs(series["rps"].mean() - selectors) <= 0.1 * selectors, (series, selectors)
    # The server counts its service inside the window only, not the warm-up's (the audit saw 4.86 s in 3.9).
    import pandas as pd

    cell = out / "io-wait-selectors-u10"
    window = json.loads((cell / "run.json").read_text())["window"]
    served = pd.read_csv(cell / "connections.csv")["server_in_window_service"].dropna()
    assert len(served) and (served <= window["monotonic_stop"] - window["monotonic_start"] + 0.001).all(), served
    assert ours_running() == []
    no_failed_self_check(out)
    page_opens_with_the_answer(out / "compare.html")


def no_failed_self_check(out: Path) -> None:
    """Every cell's checks.csv: its figures agree with each other and with theory (loadtest.report.rules.checks)."""
    for path in out.glob("*/checks.csv"):
        with path.open() as f:
            failed = [r for r in csv.DictReader(f) if r["status"] == "fail"]
        assert not failed, (path.parent.name, failed)


def page_opens_with_the_answer(page_path: Path) -> None:
    """In Chromium: no console error; the ranked tables and at most 5 headlines a scenario, on the first screen,
    before any chart."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by bash .ci/setup --test")
    from tests.browser import FLAGS, chromium

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(), args=[f for f in FLAGS if f != "--headless"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("div.chart .main-svg", timeout=15_000)  # the charts below drew
            sections = page.query_selector_all("section.answer")
            assert sections and all(len(s.query_selector_all("ol.headlines li")) <= 5 for s in sections)
            first = page.query_selector("table.ranked").bounding_box()
            assert first is not None and first["y"] + first["height"] <= 900, first  # on the first screen
            order = page.evaluate("""() => [...document.querySelectorAll('section.answer, div.chart')]
                                        .map(e => e.tagName)""")
            assert order.index("DIV") > len(sections) - 1 and set(order[: len(sections)]) == {"SECTION"}, order
            assert page.inner_text("table.ranked tr:nth-child(2) td:nth-child(2)") == "selectors"
            assert not errors, errors
        finally:
            browser.close()


def test_a_failed_expectation_is_a_line_and_exit_3_and_a_malformed_one_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = compare(
        "--designs",
        "selectors",
        "--users",
        "2",
        "--scenario",
        "io-wait",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--out",
        str(out),
        "--quiet",
        "--expect",
        "io-wait/selectors/2u: rps >= 1000000",
    )
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expectation failed: io-wait/selectors/2u: rps = "), lines
    assert lines[0].endswith(", wanted rps >= 1,000,000 (io-wait/selectors/2u: rps >= 1000000)"), lines
    # --quiet: the page's path and nothing else on stdout
    assert done.stdout.strip() == f"compare report: {(out / 'compare.html').resolve()}", done.stdout
    bad = compare(
        "--designs",
        "selectors",
        "--scenario",
        "io-wait",
        "--out",
        str(tmp_path / "none"),
        "--expect",
        "io-wait/selectors: rps >>> 5",
        timeout=30,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--expect" in bad.stderr
    assert not (tmp_path / "none").exists()  # no cell ran


@pytest.mark.skipif(not ISOLATION, reason=f"no private network namespace: {WHY_NOT}")
def test_conn_storm_overflows_blocking_with_exact_counters(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = compare(
        "--designs",
        "blocking",
        "--users",
        "30",
        "--scenario",
        "conn-storm",
        "--backlog",
        "2",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--processes",
        "1",  # its one load process gives out at this rate: the counters are the subject, not a second run's rate
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    row = summary(out)[("conn-storm", "blocking", "30")]
    assert row["counters_scope"] == "isolated"
    assert int(row["listen_overflows"]) > 0
    assert int(row["backlog"]) == 2 and int(row["peak_accept_queue"]) <= 3
    assert int(row["peak_time_wait"]) > 0
    # The counters are the window's own, read at its edges: the start-up burst's drops (30 users at backlog 2,
    # before the window opened) are in the run's total but not in the window's figure.
    cell = out / "conn-storm-blocking-u30"
    edges = json.loads((cell / "run.json").read_text())["window"]["counters"]
    assert int(row["listen_overflows"]) == edges["close"]["ListenOverflows"] - edges["open"]["ListenOverflows"]
    with (cell / "monitor.csv").open() as f:
        whole_run = int(list(csv.DictReader(f))[-1]["TcpExt_ListenOverflows"])
    assert edges["open"]["ListenOverflows"] > 0 and int(row["listen_overflows"]) < whole_run
    # A connect-per-request table shows what a user waited: from connect() start to the first reply byte.
    assert "p99 from connect" in done.stdout
    # Not accepted at the window's close: at most backlog + 1 in the queue, the rest half-open.
    assert int(row["connections_never_accepted"]) - int(row["connections_half_open"]) <= 3
    assert abs(sum(float(row[f"window_share_{s}"]) for s in WINDOW_STAGES) - 1) <= 0.002
    no_failed_self_check(out)
    page = (out / "compare.html").read_text()
    assert "The accept queue overflowed on 1 of 1 designs; worst blocking: " in page
    assert f"{int(row['listen_overflows']):,} packets dropped at backlog 2 (SYNs, final ACKs and early data)" in page


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--designs", "blocking,nosuch"], "--designs"),
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
    proc = start_compare(
        "--designs",
        "threaded,selectors",
        "--users",
        "3",
        "--scenario",
        "io-wait",
        "--duration",
        "3s",
        "--warmup",
        "0s",
        "--out",
        str(out),
    )
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
