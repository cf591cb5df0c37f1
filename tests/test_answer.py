"""The compare page's answer, rule by rule: trends both ways, unfinished work that matters, the ranking,
the headlines' cap, and CI expectations.  Pure: rows and run data made here, no processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadtest import expect
from loadtest.accounting import waiting_words
from loadtest.report.answer import HEADLINES, Cell, answer, standings, trend, trend_sentence
from loadtest.report.load import RunData

ONE_AT_A_TIME = {"serves_one_at_a_time": True, "uses_threads": False, "uses_processes": False, "pooled": False}
EVENT_LOOP = {"serves_one_at_a_time": False, "uses_threads": False, "uses_processes": False, "pooled": False}


def cell(variant: str, users: int, rps: float, traits: dict[str, bool] | None = None,
         unfinished: dict[tuple[str, str], list[int]] | None = None, **figures: Any) -> Cell:  # fmt: skip
    row: dict[str, Any] = {"scenario": "s", "variant": variant, "users": users, "rps": rps, "latency_p50_ms": 1.0,
                           "latency_p99_ms": 2.0, "users_served": users, "users_starved": 0, "client_bound": False,
                           "machine_cpu_percent": 50.0, "pipeline": 1, "failures": 0, "listen_overflows": 0,
                           "backlog": 128, **figures}  # fmt: skip
    info = {"server": {"traits": traits or EVENT_LOOP}, "server_stopped": {"requests": 1}, "cpus": 2}
    run = RunData(Path("."), info, pd.DataFrame(), {}, None, unfinished=unfinished or {})
    return Cell(row, run)


@pytest.mark.parametrize(("lo", "hi", "word", "ratio"), [
    (100, 100, "flat", 1.0), (100, 115, "flat", 1.15), (100, 85, "flat", 0.85),  # within ±15 %: flat
    (100, 116, "scales", 1.16), (10, 49, "scales", 4.9),
    (100, 84, "falls", 100 / 84),
    (5296, 2024, "falls", 5296 / 2024),  # conn-storm, blocking: once called "stays flat"
    (7991, 2604, "falls", 7991 / 2604),  # conn-storm, prethreaded: once called "stays flat"
])  # fmt: skip
def test_a_trend_is_flat_within_15_percent_and_names_a_rise_or_a_fall(lo: float, hi: float, word: str,
                                                                       ratio: float) -> None:  # fmt: skip
    got_word, got_ratio = trend(lo, hi)
    assert got_word == word and math.isclose(got_ratio, ratio, rel_tol=1e-9)


def test_the_quoted_falls_read_as_falls_with_their_cause() -> None:
    lo = cell("blocking", 10, 5296.0, ONE_AT_A_TIME, listen_overflows=0)
    hi = cell("blocking", 50, 2024.0, ONE_AT_A_TIME, listen_overflows=338, backlog=10, connections_syn_retried=55)
    text = trend_sentence("conn-storm", "blocking", lo, hi, 2)
    assert text.startswith("conn-storm, blocking: falls ×2.6 from 10 to 50 users (5,296 → 2,024 req/s)"), text
    assert "the accept queue overflowed (338 packets dropped at backlog 10)" in text
    assert "55 connections waited on SYN retries" in text
    up = trend_sentence("io-wait", "threaded", cell("threaded", 10, 486.0), cell("threaded", 50, 2431.0), 2)
    assert up == "io-wait, threaded: scales ×5.0 from 10 to 50 users (486 → 2,431 req/s)."
    flat = trend_sentence("io-wait", "blocking", cell("blocking", 10, 49.0), cell("blocking", 50, 49.4), 2)
    assert "stays flat" in flat


def test_unfinished_work_is_news_only_past_the_finished_p99_and_the_floor() -> None:
    # Closed loop: every user has a request in flight, younger than the finished p99: nothing to say.
    assert waiting_words([("request", [3.0, 12.0, 19.5] * 10, 21.0)]) == ""
    # Younger than the floor (100 ms) is never news, even past a tiny p99.
    assert waiting_words([("request", [40.0, 60.0], 0.5)]) == ""
    # Nine users starved on a one-at-a-time server, waiting the whole window.
    assert waiting_words([("request", [3980.0 + i for i in range(9)] + [5.0], 21.0)]) == "waiting ≥ 3.98 s: 9 requests"
    said = waiting_words([("request", [250.0], 20.0), ("connect", [1200.0, 2100.0], 0.1)])
    assert said == "waiting ≥ 250 ms: 1 request, 2 connects"


def test_client_bound_designs_rank_by_their_capacity_estimate_and_say_so() -> None:
    cells = [
        cell("selectors", 50, 20_000.0, client_bound=True, server_capacity_rps_per_core=140_000),
        cell("threaded", 50, 30_000.0, server_capacity_rps_per_core=40_000),
        # Client-bound too, but one at a time: CPU is not what bounds it, so its estimate ranks nothing.
        cell("blocking", 50, 25_000.0, ONE_AT_A_TIME, client_bound=True, server_capacity_rps_per_core=90_000),
    ]
    table = standings(cells, 2)
    assert [s.design for s in table] == ["selectors", "threaded", "blocking"]
    assert table[0].estimate == 140_000 and table[0].figure == "≈ 140,000 est. (measured 20,000)"
    assert table[1].estimate is None and table[2].estimate is None and table[2].figure == "25,000"
    assert "client-bound" in table[0].badges


def test_a_design_that_starves_users_ranks_below_those_that_serve_everyone() -> None:
    starving = cell("blocking", 50, 12_000.0, ONE_AT_A_TIME, users_served=1, users_starved=49,
                    unfinished={("ECHO", "persistent"): [4_980_000] * 49})  # fmt: skip
    table = standings([starving, cell("threaded", 50, 9_000.0)], 2)
    assert [s.design for s in table] == ["threaded", "blocking"]
    assert table[1].served == "1/50" and "starved 49/50" in table[1].badges
    assert table[1].waiting == "waiting ≥ 4.98 s: 49 requests"


def test_at_most_five_headlines_each_with_its_numbers() -> None:
    cells = [cell("blocking", 10, 5296.0, ONE_AT_A_TIME), cell("threaded", 10, 7000.0), cell("selectors", 10, 8000.0),
             cell("blocking", 50, 2024.0, ONE_AT_A_TIME, users_served=20, users_starved=30, listen_overflows=338,
                  backlog=10, connections_syn_retried=55, connect_p99_ms=1030.0, first_reply_max_ms=3000.0,
                  unfinished={("ECHO", "connect-per-request"): [4_000_000] * 30}),
             cell("threaded", 50, 2604.0, listen_overflows=322, backlog=10, users_served=22, users_starved=28),
             cell("selectors", 50, 13_800.0, client_bound=True, server_capacity_rps_per_core=23_000,
                  listen_overflows=263, backlog=10)]  # fmt: skip
    said = answer("conn-storm", cells, 2)
    assert 1 <= len(said.headlines) <= HEADLINES
    assert said.headlines[0].startswith("selectors leads conn-storm with ≈ 23,000 est. (measured 13,800) req/s")
    assert any("blocking serves one connection at a time: 30 of 50 users got no reply" in h for h in said.headlines)
    assert any("overflowed on 3 of 3 designs; worst blocking: 338 packets dropped" in h for h in said.headlines)


@pytest.mark.parametrize(("text", "words"), [
    ("io-wait/threaded rps >= 2000", "write SCENARIO/DESIGN"),
    ("io-wait: rps >= 2000", "SCENARIO/DESIGN or SCENARIO/DESIGN/USERSu"),
    ("io-wait/threaded/fifty: rps >= 2000", "is not a load"),
    ("io-wait/threaded: rps => 2000", "is not COLUMN OP VALUE"),
    ("io-wait/threaded: speed >= 2000", "'speed' is not a numeric column of summary.csv"),
    ("io-wait/threaded: variant == 3", "'variant' is not a numeric column"),
    ("io-wait/threaded: rps >= lots", "'lots' is not a number"),
])  # fmt: skip
def test_a_malformed_expectation_is_one_line_naming_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        expect.parse(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_expectations_pass_fail_and_refuse_to_read_a_lower_bound_as_below() -> None:
    e = expect.parse("io-wait/*: rps >= 2,000; users_starved == 0")
    row = {"scenario": "io-wait", "variant": "threaded", "users": 50, "rps": 2431.1, "users_starved": 0,
           "latency_p99_ms": 40.0, "lower_bound_columns": "latency_p99_ms"}  # fmt: skip
    planned = [("io-wait", "threaded", 50), ("io-wait", "blocking", 50)]
    slow = {**row, "variant": "blocking", "rps": 49.4, "users_starved": 49}
    failed = expect.check([e], [row, slow], planned)
    assert failed == [
        "expectation failed: io-wait/blocking/50u: rps = 49.4, wanted rps >= 2,000 (io-wait/*: rps >= 2,000; "
        "users_starved == 0)",
        "expectation failed: io-wait/blocking/50u: users_starved = 49, wanted users_starved == 0 (io-wait/*: rps >= "
        "2,000; users_starved == 0)",
    ]
    p99 = expect.parse("io-wait/threaded/50u: latency_p99_ms <= 100")
    assert "is a lower bound" in expect.check([p99], [row], planned)[0]  # ≥ 40 ms cannot show ≤ 100
    assert expect.check([expect.parse("io-wait/threaded: latency_p99_ms >= 30")], [row], planned) == []
    assert expect.unmatched([expect.parse("cpu/threaded: rps > 1")], planned) is not None
    missing = expect.check([expect.parse("io-wait/threaded: rps > 1")], [], planned)
    assert missing == ["expectation failed: io-wait/threaded/50u: not measured, the cell did not finish "
                       "(io-wait/threaded: rps > 1)"]  # fmt: skip
