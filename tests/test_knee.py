"""The sweep's rules, pure: a step judged ok or not, what gave out first past the knee, the knee's line.
(A sweep run end to end is in test_sweep.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from loadtest.report.rules import knee


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
        ({"rps": 500.0, "server_cpu_us_per_request": 1900.0}, {"uses_threads": True}, "one interpreter, one GIL"),
        ({"rps": 500.0, "server_cpu_us_per_request": 1900.0}, {"uses_threads": False}, "of one core: one thread"),
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
