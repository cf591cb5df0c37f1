"""The compare page's answer, rule by rule: trends both ways, unfinished work that matters, the ranking,
the headlines' cap, and CI expectations.  Pure: rows and run data made here, no processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadtest.client.accounting import waiting_words
from loadtest.matrix import expect
from loadtest.report.compare_page import answer_html
from loadtest.report.load import RunData
from loadtest.report.rules.answer import (
    HEADLINES,
    NO_ESTIMATE,
    RULE,
    Cell,
    answer,
    cpu_share,
    standings,
    trend,
    trend_sentence,
)

ONE_AT_A_TIME = {"serves_one_at_a_time": True, "uses_threads": False, "uses_processes": False, "pooled": False}
EVENT_LOOP = {"serves_one_at_a_time": False, "uses_threads": False, "uses_processes": False, "pooled": False}
THREADS = {"serves_one_at_a_time": False, "uses_threads": True, "uses_processes": False, "pooled": False}
PROCESSES = {"serves_one_at_a_time": False, "uses_threads": False, "uses_processes": True, "pooled": True}


def cell(
    design: str,
    users: int,
    rps: float,
    traits: dict[str, bool] | None = None,
    unfinished: dict[tuple[str, str], list[int]] | None = None,
    **figures: Any,
) -> Cell:
    row: dict[str, Any] = {
        "scenario": "s",
        "design": design,
        "users": users,
        "rps": rps,
        "latency_p50_ms": 1.0,
        "latency_p99_ms": 2.0,
        "users_served": users,
        "users_starved": 0,
        "client_bound": False,
        "machine_cpu_percent": 50.0,
        "pipeline": 1,
        "failures": 0,
        "listen_overflows": 0,
        "backlog": 128,
        **figures,
    }
    info = {"server": {"traits": traits or EVENT_LOOP}, "server_stopped": {"requests": 1}, "cpus": 2}
    run = RunData(Path("."), info, pd.DataFrame(), {}, None, unfinished=unfinished or {})
    return Cell(row, run)


@pytest.mark.parametrize(
    ("lo", "hi", "word", "ratio"),
    [
        (100, 100, "flat", 1.0),
        (100, 115, "flat", 1.15),
        (100, 85, "flat", 0.85),  # within ±15 %: flat
        (100, 116, "scales", 1.16),
        (10, 49, "scales", 4.9),
        (100, 84, "falls", 100 / 84),
        (5296, 2024, "falls", 5296 / 2024),  # conn-storm, blocking: once called "stays flat"
        (7991, 2604, "falls", 7991 / 2604),  # conn-storm, prethreaded: once called "stays flat"
    ],
)
def test_a_trend_is_flat_within_15_percent_and_names_a_rise_or_a_fall(
    lo: float, hi: float, word: str, ratio: float
) -> None:
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
    assert said == "waiting ≥ 250 ms: 1 request; ≥ 1.20 s: 2 connects"  # each group its own bound
    # Ages far apart: the youngest alone would understate the rest (an audit: "≥ 197 ms" for 28 waiting 3.88 s).
    said = waiting_words([("request", [197.4] + [3880.0] * 28, 20.0)])
    assert said == "waiting ≥ 197 ms: 29 requests, the longest ≥ 3.88 s"


def cost(cpu_us: float) -> dict[str, float]:
    """A row's server CPU figures as summary.csv has them: µs per request and 1e6 ÷ that, one core's estimate."""
    return {"server_cpu_us_per_request": cpu_us, "server_capacity_rps_per_core": round(1e6 / cpu_us)}


def test_when_a_rate_is_not_the_servers_every_design_ranks_by_its_estimate_and_says_so() -> None:
    cells = [
        # Client-bound, its server at 76.5 % of its one core: CPU-bound enough for its estimate to mean something.
        cell("selectors", 50, 90_000.0, client_bound=True, machine_cpu_percent=170.0, **cost(8.5)),
        # Not bound itself, at 95 %: ranked by its estimate too, like with like, though its rate is its own.
        cell("threaded", 50, 100_000.0, THREADS, machine_cpu_percent=150.0, **cost(9.5)),
    ]
    table = standings(cells, 2)
    assert [s.design for s in table] == ["selectors", "threaded"]  # by measured rate threaded would lead
    assert table[0].estimate == 117_647 and table[0].figure == "≈ 117,647 est. (measured 90,000)"
    assert table[1].estimate == 105_263 and table[1].figure == "≈ 105,263 est. (measured 100,000)"
    assert "client-bound" in table[0].badges and not table[1].bounds
    said = answer("echo", cells, 2)
    assert said.ranking.startswith("Ranked by users starved (fewest first), then every design's server-CPU estimate")
    assert "every design is ranked by its server-CPU estimate" in said.headlines[0]


def test_conn_storm_sets_no_estimate_against_a_measurement_nor_estimates_a_server_that_is_not_cpu_bound() -> None:
    # The default compare's conn-storm: selectors "led with ≈ 12,253 est." against blocking's measured 4,881 req/s,
    # though blocking's own estimate was 12,402 at nearly the same CPU per connection (80.6 vs 81.6 µs).  Blocking
    # serves one connection at a time at 39 % of a core: its round trips bound it, not its CPU, so its estimate
    # means nothing, and with one estimate meaningless none ranks: every design by its measured rate.
    selectors = cell(
        "selectors", 50, 9_875.0, client_bound=True, machine_cpu_percent=170.4, listen_overflows=267, **cost(81.6)
    )
    blocking = cell(
        "blocking",
        50,
        4_881.0,
        ONE_AT_A_TIME,
        users_served=18,
        users_starved=32,
        machine_cpu_percent=138.3,
        listen_overflows=336,
        **cost(80.6),
    )
    threaded = cell(
        "threaded",
        50,
        2_875.0,
        THREADS,
        users_served=29,
        users_starved=21,
        machine_cpu_percent=144.3,
        listen_overflows=334,
        **cost(318.5),
    )
    table = standings([selectors, blocking, threaded], 2)
    assert all(s.estimate is None for s in table), [s.figure for s in table]
    assert table[0].design == "selectors" and table[0].figure == "9,875" and "client-bound" in table[0].badges
    by_design = {s.design: s for s in table}
    assert by_design["blocking"].no_estimate == NO_ESTIMATE == "not CPU-bound: no estimate"
    assert round(by_design["blocking"].cpu_share or 0, 2) == 0.39
    assert by_design["selectors"].no_estimate == "" and by_design["threaded"].no_estimate == ""  # theirs stood
    said = answer("conn-storm", [selectors, blocking, threaded], 2)
    assert "then measured req/s, every design alike: selectors client-bound" in said.ranking
    assert "blocking (39%) was not CPU-bound" in said.ranking
    assert said.headlines[0].startswith("selectors leads conn-storm with 9,875 req/s at 50 users")
    page = answer_html(said)
    assert "not CPU-bound: no estimate" in page and "every design alike" in page


def test_conn_storm_a_design_that_starves_more_users_ranks_below_one_that_starves_fewer() -> None:
    # blocking served 18 of 50 users, threaded 29 of 50: blocking's higher rate went to fewer users.
    blocking = cell("blocking", 50, 4_881.0, ONE_AT_A_TIME, users_served=18, users_starved=32)
    threaded = cell("threaded", 50, 2_875.0, THREADS, users_served=29, users_starved=21)
    table = standings([blocking, threaded, cell("selectors", 50, 9_875.0)], 2)
    assert [s.design for s in table] == ["selectors", "threaded", "blocking"]
    assert table[1].served == "29/50" and table[2].served == "18/50"


def test_echo_ranks_every_design_by_its_estimate_when_one_is_client_bound() -> None:
    # The default compare's echo: selectors' estimate 74,627 was set against threaded's *measured* 51,154, threaded's
    # load generator at 88.1 %, just under the 90 % cut-off.  One rule for the scenario: both by their estimates.
    selectors = cell(
        "selectors",
        50,
        58_000.0,
        client_bound=True,
        loadgen_median_cpu_percent=96.9,
        machine_cpu_percent=181.6,
        **cost(13.4),
    )
    threaded = cell(
        "threaded", 50, 51_154.0, THREADS, loadgen_median_cpu_percent=88.1, machine_cpu_percent=180.5, **cost(18.0)
    )
    table = standings([threaded, selectors], 2)
    assert [s.design for s in table] == ["selectors", "threaded"]
    assert table[0].figure == "≈ 74,627 est. (measured 58,000)"
    assert table[1].estimate == 55_556 and table[1].figure == "≈ 55,556 est. (measured 51,154)"


def test_echo_a_client_bound_cell_that_filled_the_machine_is_flagged_machine_bound_too() -> None:
    # echo/selectors used 181.6 % of the 2-core machine but read client-bound alone, while threaded at 180.5 % read
    # machine-bound: summary.load_bound names only the first bound that holds.
    selectors = cell("selectors", 50, 58_000.0, client_bound=True, machine_cpu_percent=181.6, **cost(13.4))
    threaded = cell("threaded", 50, 51_154.0, THREADS, machine_cpu_percent=180.5, **cost(18.0))
    table = {s.design: s for s in standings([selectors, threaded], 2)}
    assert table["selectors"].badges[:2] == ["client-bound", "machine-bound"]
    assert table["selectors"].bounds == ["client-bound", "machine-bound"]
    assert table["threaded"].bounds == ["machine-bound"]
    said = answer("echo", [selectors, threaded], 2)
    assert any("machine-bound on 2 of 2 designs (selectors, threaded)" in h for h in said.headlines), said.headlines
    assert "selectors client-bound and machine-bound; threaded machine-bound" in said.ranking


def test_processes_are_estimated_on_every_core_and_judged_against_the_cpu_left_to_them() -> None:
    # cpu: preforked on 2 cores, machine-bound (its own work filled the machine): 491 a core, 919 measured.  An
    # estimate stands in for a rate, so a process design's is every core's: ≈ 982, not 491 beside selectors' 489.
    preforked = cell("preforked", 4, 919.0, PROCESSES, machine_cpu_percent=194.3, **cost(2038.63))
    selectors = cell("selectors", 4, 482.7, machine_cpu_percent=106.0, **cost(2045.02))
    table = standings([selectors, preforked], 2)
    assert [s.design for s in table] == ["preforked", "selectors"]
    assert table[0].estimate == 982 and table[1].estimate == 489
    # What a server could use: one core for one interpreter; every core for processes, less the load generator's.
    assert cpu_share(selectors.row, EVENT_LOOP, 2) == pytest.approx(0.987, abs=0.001)
    assert cpu_share(preforked.row, PROCESSES, 2) == pytest.approx(187.35 / 193.0, abs=0.001)
    # Processes at 100 % beside a load generator at 95 %: 100 of the 105 % left them is CPU-bound (not 50 % of 2 cores).
    shared = cell("preforked", 50, 10_000.0, PROCESSES, machine_cpu_percent=195.0, **cost(100.0))
    assert cpu_share(shared.row, PROCESSES, 2) == pytest.approx(100 / 105)


def test_the_rule_is_one_line_and_says_never_a_mix() -> None:
    assert "\n" not in RULE and "never an estimate against a measurement" in RULE
    plain = answer("io-wait", [cell("threaded", 50, 2_419.0), cell("selectors", 50, 2_332.0)], 2)
    assert plain.ranking == (
        "Ranked by users starved (fewest first), then measured req/s: every rate is its "
        "server's own (none client-/machine-bound)."
    )
    assert all(s.estimate is None and not s.no_estimate for s in plain.standings)


def test_a_design_that_starves_users_ranks_below_those_that_serve_everyone() -> None:
    starving = cell(
        "blocking",
        50,
        12_000.0,
        ONE_AT_A_TIME,
        users_served=1,
        users_starved=49,
        unfinished={("ECHO", "persistent"): [4_980_000] * 49},
    )
    table = standings([starving, cell("threaded", 50, 9_000.0)], 2)
    assert [s.design for s in table] == ["threaded", "blocking"]
    assert table[1].served == "1/50" and "starved 49/50" in table[1].badges
    assert table[1].waiting == "waiting ≥ 4.98 s: 49 requests"


def test_at_most_five_headlines_each_with_its_numbers() -> None:
    cells = [
        cell("blocking", 10, 5296.0, ONE_AT_A_TIME),
        cell("threaded", 10, 7000.0),
        cell("selectors", 10, 8000.0),
        cell(
            "blocking",
            50,
            2024.0,
            ONE_AT_A_TIME,
            users_served=20,
            users_starved=30,
            listen_overflows=338,
            backlog=10,
            connections_syn_retried=55,
            connect_p99_ms=1030.0,
            first_reply_max_ms=3000.0,
            unfinished={("ECHO", "connect-per-request"): [4_000_000] * 30},
        ),
        cell("threaded", 50, 2604.0, listen_overflows=322, backlog=10, users_served=22, users_starved=28),
        cell(
            "selectors",
            50,
            13_800.0,
            client_bound=True,
            server_capacity_rps_per_core=23_000,
            listen_overflows=263,
            backlog=10,
        ),
    ]
    said = answer("conn-storm", cells, 2)
    assert 1 <= len(said.headlines) <= HEADLINES
    # No server CPU figures here: no estimate means anything, so selectors' client-bound rate ranks as measured.
    assert said.headlines[0].startswith("selectors leads conn-storm with 13,800 req/s at 50 users")
    assert [s.design for s in said.standings] == ["selectors", "threaded", "blocking"]  # 28 starved, then 30
    assert any("blocking serves one connection at a time: 30 of 50 users got no reply" in h for h in said.headlines)
    assert any("overflowed on 3 of 3 designs; worst blocking: 338 packets dropped" in h for h in said.headlines)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("io-wait/threaded rps >= 2000", "write SCENARIO/DESIGN"),
        ("io-wait: rps >= 2000", "SCENARIO/DESIGN or SCENARIO/DESIGN/USERSu"),
        ("io-wait/threaded/fifty: rps >= 2000", "is not a load"),
        ("io-wait/threaded: rps => 2000", "is not COLUMN OP VALUE"),
        ("io-wait/threaded: speed >= 2000", "'speed' is not a numeric column of summary.csv"),
        ("io-wait/threaded: design == 3", "'design' is not a numeric column"),
        ("io-wait/threaded: rps >= lots", "'lots' is not a number"),
    ],
)
def test_a_malformed_expectation_is_one_line_naming_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        expect.parse(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_expectations_pass_fail_and_refuse_to_read_a_lower_bound_as_below() -> None:
    e = expect.parse("io-wait/*: rps >= 2,000; users_starved == 0")
    row = {
        "scenario": "io-wait",
        "design": "threaded",
        "users": 50,
        "rps": 2431.1,
        "users_starved": 0,
        "latency_p99_ms": 40.0,
        "lower_bound_columns": "latency_p99_ms",
    }
    planned = [("io-wait", "threaded", 50), ("io-wait", "blocking", 50)]
    slow = {**row, "design": "blocking", "rps": 49.4, "users_starved": 49}
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
    assert missing == [
        "expectation failed: io-wait/threaded/50u: not measured, the cell did not finish (io-wait/threaded: rps > 1)"
    ]
