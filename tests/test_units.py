"""Pure logic, proved without a process: option checks, the sweep's rules, Stevens' conclusions,
findings, the live tab's rows from the declarations.  (Everything a person runs is tested for real
in the other files.)"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from loadtest.declare import options as opts
from loadtest.declare.columns import MONITOR, SUMMARY_NAMES
from loadtest.report.rules import knee, stevens
from loadtest.report.rules.findings import syn_retrans_note, user_findings


def parsed(**given: Any) -> SimpleNamespace:
    values = {"read_timeout": None, **{o.dest: o.default for o in opts.OPTIONS}, **given}
    return SimpleNamespace(**values)


# -- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "host", "problem"),
    [
        ({}, None, None),
        ({"payload_bytes": -1}, None, "--payload-bytes must be >= 0"),
        ({"connect_timeout": 0.0}, None, "--connect-timeout must be > 0"),
        ({"server": "none"}, None, "--server none needs --host"),
        ({"server": "blocking"}, "tcp://127.0.0.1:1", "both name a target"),
        ({"server_cmd": "srv --port 1"}, None, "--server-cmd needs {port}"),
        ({"server_cmd": "srv {port}"}, "tcp://127.0.0.1:1", "--server-cmd and --host"),
        (
            {"op": "SLEEP", "sleep_ms": 20_000},
            None,
            "--sleep-ms 20000 is over the server's cap of 10000 "
            "(--max-sleep-ms): every request would be refused; use at most 10000, or raise --max-sleep-ms",
        ),
        ({"op": "SLEEP", "sleep_ms": 20_000, "max_sleep_ms": 30_000}, None, None),  # the cap raised with it
        ({"op": "ECHO", "sleep_ms": 20_000}, None, None),  # only the op's own argument counts
        (
            {"payload_bytes": 2_000_000, "max_frame": 1_000_000},
            None,
            "--payload-bytes 2000000 is over the server's cap of 999991 (--max-frame)",
        ),
        ({"server_bind": "0.0.0.0"}, None, "add --server-advertise ADDR"),
        ({"pipeline": 4, "mix": "ECHO:9,WORK=10:1"}, None, "--pipeline and --mix"),
        ({"mix": "PING:1"}, None, "'PING' is not an op"),
        ({}, "http://x:1", "use tcp://HOST:PORT"),
    ],
)
def test_run_problem(given: dict[str, Any], host: str | None, problem: str | None) -> None:
    found = opts.run_problem(parsed(**given), host)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_server_flags_come_from_the_options_that_declare_them() -> None:
    args = opts.server_args(
        parsed(backlog=7, server_workers=3, max_sleep_ms=30_000, server_read_timeout=2.5, max_requests=1)
    )
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs == {
        "--backlog": "7",
        "--workers": "3",
        "--max-connections": "2048",
        "--max-frame": "1048576",
        "--max-sleep-ms": "30000",
        "--max-work-us": "1000000",
        "--read-timeout": "2.5",
        "--max-requests": "1",
        "--retire-worker-after": "0",
        "--conn-log-cap": "100000",
    }
    switched = opts.server_args(parsed(epoll_exclusive=True))  # a switch is its flag alone, when on
    assert "--epoll-exclusive" in switched and "--epoll-exclusive" not in args
    from servers.cli import build_parser  # every flag socklab passes is one the server has

    known = {s for a in build_parser()._actions for s in a.option_strings}
    assert set(pairs) <= known
    assert {o.name for o in opts.restarting_options()} >= {"server", "server-cmd", "backlog", "max-frame"}


def test_the_old_read_timeout_spelling_moves_to_reply_timeout() -> None:
    options = parsed(read_timeout=3.0)
    (notice,) = opts.apply_deprecated(options)
    assert options.reply_timeout == 3.0 and options.read_timeout is None
    assert "--read-timeout is deprecated" in notice and "--server-read-timeout" in notice
    assert opts.apply_deprecated(parsed()) == []


def test_compare_overrides_check_their_rules() -> None:
    parser = argparse.ArgumentParser()
    opts.add_override_arguments(parser)
    assert opts.overrides(parser.parse_args(["--backlog", "3"])) == {"backlog": 3}
    with pytest.raises(SystemExit):
        parser.parse_args(["--sleep-ms", "-1"])


# -- the sweep's rules ------------------------------------------------------------------------------
def row(**given: Any) -> dict[str, Any]:
    base = {
        "rps": 100.0,
        "duration_s": 3.0,
        "latency_p99_ms": 10.0,
        "failures": 0,
        "failure_classes": "",
        "client_bound": False,
        "machine_cpu_percent": 50.0,
        "loadgen_median_cpu_percent": 40.0,
        "listen_overflows": 0,
        "server_cpu_us_per_request": 100.0,
        "backlog": 128,
        "peak_accept_queue": 0,
    }
    return {**base, **given}


@pytest.mark.parametrize(
    ("given", "rate", "verdict"),
    [
        ({}, 100, "ok"),
        ({"rps": 99.4}, 100, "ok"),  # a request at each edge of the window is counting, not saturation
        ({"rps": 90.0}, 100, "achieved 90 of 100 req/s"),
        ({"latency_p99_ms": 250.0}, 100, "p99 250.0 ms over the 100 ms bound"),
        ({"latency_p99_ms": math.nan}, 100, "ok"),
        ({"failures": 3, "failure_classes": "reset=3"}, 100, "3 failures (reset=3)"),
    ],
)
def test_judge(given: dict[str, Any], rate: float, verdict: str) -> None:
    assert knee.judge(row(**given), rate, 100.0) == verdict


@pytest.mark.parametrize(
    ("given", "traits", "words"),
    [
        ({"client_bound": True, "loadgen_median_cpu_percent": 97.0}, {}, "the load generator (the busiest"),
        ({"listen_overflows": 40}, {}, "the accept queue: 40 packets dropped"),
        ({"rps": 500.0, "server_cpu_us_per_request": 1900.0}, {}, "one interpreter, one GIL"),
        ({"rps": 900.0, "server_cpu_us_per_request": 2000.0}, {"uses_processes": True}, "server CPU on every core"),
        ({}, {"serves_one_at_a_time": True}, "serving one connection at a time"),
        ({}, {"pooled": True}, "its pool of 4 workers"),
        ({}, {}, "with CPU to spare"),
    ],
)
def test_what_gave_out(given: dict[str, Any], traits: dict[str, bool], words: str) -> None:
    assert words in knee.what_gave_out(row(**given), traits, 4, "p99 over", cpus=2)


def test_knee_lines() -> None:
    assert knee.ladder_rates(25, 200) == [25, 50, 100, 200]
    ladder = knee.Ladder("io-wait", "threaded", knee=800.0, gave_out="nothing within the ladder (up to 800 req/s)")
    assert "knee 800 req/s; past it, what gave out first: nothing within" in knee.knee_line(ladder)
    ladder.gave_out = "the load generator (the busiest Locust process at 97% of a core)"
    ladder.steps = [knee.Step(None, 800.0, row={"rps": 790.0})]  # type: ignore[arg-type]
    assert "knee not reached: the load generator saturated at 790 req/s" in knee.knee_line(ladder)


# -- Stevens' conclusions ------------------------------------------------------------------------------
def book(**totals: float) -> pd.DataFrame:
    names = {
        "serv00": "blocking",
        "serv01": "forking",
        "serv02": "preforked",
        "serv06": "threaded",
        "serv07": "prethreaded",
        "serv08": "threadpool",
    }
    rows = [{"design": names[k], "book": f"{k}: {stevens.BOOK_DESIGNS[k]}", "total_us": v} for k, v in totals.items()]
    t = pd.DataFrame(rows)
    t["delta_us"] = t["total_us"] - totals["serv00"]
    return t


def test_stevens_conclusions_as_measured_in_the_last_wave() -> None:
    said = stevens.conclusions(book(serv00=45.7, serv01=2269.8, serv02=67.5, serv06=212.6, serv07=54.8, serv08=45.9))
    text = " | ".join(said)
    assert '"Fork per client is by far the most expensive": holds here — forking 2,270 µs' in text
    assert "×10.7 the next dearest (threaded" in text
    assert '"Pools cut process-control CPU by a factor of 10 or more": holds' in text
    assert 'one thread accept and hand off": does not hold' in text
    assert '"Threads are normally much faster than processes": holds in part' in text


def test_stevens_conclusions_when_the_book_is_right() -> None:
    said = " | ".join(stevens.conclusions(book(serv00=50, serv01=500, serv02=100, serv06=100, serv07=55, serv08=70)))
    assert 'by far the most expensive": holds' in said and 'hand off": holds' in said
    assert 'much faster than processes": holds here' in said


# -- findings ------------------------------------------------------------------------------------------
def test_starved_users_are_said_with_where_they_wait() -> None:
    r = {
        "design": "blocking",
        "duration_s": 4.0,
        "users_served": 1,
        "users_starved": 9,
        "unfinished_connects": 0,
        "unfinished_requests": 9,
        "peak_accept_queue": 9,
        "syncookies_sent": 0,
        "fairness": 0.1,
        "longest_user_wait_ms": 4000.0,
    }
    (first, *rest) = user_findings(r, one_at_a_time=True, oldest=(0.0, 4.0))
    assert first.startswith("blocking: 1 of 10 users was served; 9 completed no request in the whole 4 s window")
    # Every user's work in flight, said as such: the served user's request is among them (the audit found the
    # served users' work attributed to the starved).
    assert "when it closed, all users together had 9 requests waiting for a reply, the oldest for 4.00 s" in first
    assert any("longest any user went without a reply: 4.00 s" in s for s in rest)


def test_syn_retrans_are_split_by_side() -> None:
    note = syn_retrans_note(
        {"tcp_syn_retrans": 62, "client_syn_retrans": 51, "server_synack_retrans": 11, "connections_syn_retried": 49}
    )
    assert note.startswith("; TCPSynRetrans 62: the clients re-sent 51 SYNs (49 connections")
    assert "the server re-sent 11 SYN-ACKs" in note
    assert syn_retrans_note({"tcp_syn_retrans": 0, "client_syn_retrans": 0}) == ""


# -- the declarations, read by every view -------------------------------------------------------------
def test_the_live_tab_shows_what_the_columns_declare(tmp_path: Path) -> None:
    from loadtest.client.latency import LatencyStore
    from loadtest.measure.live import LiveFeed, MonitorTail, figures, live_line

    names = [c.name for c in MONITOR]
    path = tmp_path / "monitor.csv"
    sample = {c: "0" for c in names} | {
        "timestamp": "1",
        "accept_queue": "4",
        "backlog": "128",
        "server_ESTABLISHED": "5",
        "TcpExt_ListenOverflows": "7",
        "counters_scope": "isolated",
        "server_rss_bytes": str(3 * 2**20),
    }
    path.write_text(",".join(names) + "\n" + ",".join(sample[c] for c in names) + "\n")
    feed = LiveFeed(monitor=MonitorTail(path))
    feed.monitor.read()
    rows = {r["figure"]: r for r in figures(feed, LatencyStore(), None, "blocking").rows}
    assert rows["accept queue / backlog"]["value"] == "4 / 128"
    assert rows["server ESTABLISHED"]["value"] == "5" and rows["server RSS"]["value"] == "3.0 MiB"
    assert rows["ListenOverflows this test"]["value"] == "7"
    assert "not a count of SYNs" in rows["ListenOverflows this test"]["meaning"]
    live = [c for c in MONITOR if c.live]
    assert len([r for r in rows if r not in ("server", "monitor sample")]) == len(live)  # a row per live column
    assert "accept queue 4/128" in live_line(feed, None) and "ListenOverflows +7" in live_line(feed, None)


def test_every_summary_column_is_declared_and_computed() -> None:
    from loadtest.report import load_run, summarize

    fixture = Path(__file__).parent / "fixtures" / "blocking_conn_storm"
    computed = summarize(load_run(fixture))
    assert list(computed) == SUMMARY_NAMES
    assert computed["peak_accept_queue"] == 3 and computed["backlog"] == 2  # read generically from the monitor
