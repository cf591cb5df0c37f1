"""Figures that must measure what they name: WORK's compute, CPU per request, memory per connection.

Pure tests: no server, no Locust; each well under a second.
"""

from __future__ import annotations

import math
import mmap
import os
import resource
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from loadtest.measure.monitor import COLUMNS, Monitor, rss_anon_bytes
from loadtest.report.rules.summary import CPU_TICK_S, MIN_CPU_TICKS, memory_per_connection, tick_rounded
from servers.protocol import burn_cpu

MB = 1 << 20


# -- WORK: user-space compute, in this thread's CPU time -----------------------------------------------
def test_burn_cpu_spends_its_amount_of_thread_cpu_and_little_more() -> None:
    burn_cpu(1000)  # learns its arithmetic's cost
    for _ in range(5):
        start = time.thread_time_ns()
        burn_cpu(20_000)
        spent = time.thread_time_ns() - start
        assert 20_000_000 <= spent < 24_000_000, spent


def test_burn_cpu_spins_in_user_space_not_in_the_clock() -> None:
    # Reading this thread's CPU clock is a system call: read on every turn of the spin it made WORK
    # 80–94 % system time here (the cpu scenario's GIL lesson is about Python compute, user time).
    # The kernel splits user from system time by sampling at its timer tick (50 ticks in these 200 ms at
    # CONFIG_HZ=250), so a stray tick or two in system mode stays far under the bound.
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(10):
        burn_cpu(20_000)
    after = resource.getrusage(resource.RUSAGE_THREAD)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    assert user + system >= 0.19
    assert system / (user + system) < 0.10, (user, system)


def test_two_threads_under_the_gil_each_burn_their_full_amount() -> None:
    spent: list[int] = []

    def work() -> None:
        start = time.thread_time_ns()
        burn_cpu(20_000)
        spent.append(time.thread_time_ns() - start)

    threads = [threading.Thread(target=work) for _ in range(2)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    assert len(spent) == 2 and min(spent) >= 20_000_000
    assert wall >= 0.038  # one GIL: 20 ms each, one after the other, not 20 ms of wall time shared


def test_burn_cpu_of_nothing_returns_at_once() -> None:
    start = time.thread_time_ns()
    burn_cpu(0)
    assert time.thread_time_ns() - start < 1_000_000


# -- CPU per request: the digits the ticks allow ---------------------------------------------------------
def test_a_few_ticks_give_a_figure_or_two_not_four() -> None:
    assert math.isclose(CPU_TICK_S, 0.01)
    # io-wait/blocking: 4 ticks over 195 requests printed 205.13 µs; it is ±25 %.
    assert tick_rounded(4 * CPU_TICK_S, 195) in (200.0, 210.0)
    assert tick_rounded(4 * CPU_TICK_S, 195, per_core=True) in (4_900.0, 5_000.0)  # 4,875 ± 25 %


def test_many_ticks_keep_their_digits() -> None:
    assert tick_rounded(12.34, 1_000_000) == pytest.approx(12.34)  # ±0.08 %: 4 figures
    assert tick_rounded(12.34, 1_000_000, per_core=True) == pytest.approx(81_040)  # 81,037 ± 66
    assert tick_rounded(1.0, 1000) == pytest.approx(1000)  # 100 ticks: ±1 %, 1,000 ± 10


@pytest.mark.parametrize("seconds", [0.0, CPU_TICK_S, (MIN_CPU_TICKS - 0.01) * CPU_TICK_S, -0.05, math.nan])
def test_under_two_ticks_there_is_no_figure(seconds: float) -> None:
    assert math.isnan(tick_rounded(seconds, 195))
    assert math.isnan(tick_rounded(seconds, 195, per_core=True))


def test_no_requests_no_figure() -> None:
    assert math.isnan(tick_rounded(1.0, 0))


@pytest.mark.parametrize("ticks", [2, 3, 7, 19, 64, 333, 1234, 98_765])
@pytest.mark.parametrize("requests", [1, 195, 4_321, 1_000_000])
def test_the_rounding_stays_within_a_tick_and_keeps_a_figure(ticks: int, requests: int) -> None:
    seconds = ticks * CPU_TICK_S
    for per_core, exact in ((False, seconds / requests * 1e6), (True, requests / seconds)):
        value = tick_rounded(seconds, requests, per_core=per_core)
        uncertainty = exact / ticks  # one tick, relative
        assert abs(value - exact) <= uncertainty / 2 * (1 + 1e-9), (value, exact)  # rounding costs < a tick
        assert value > 0  # a significant figure at least
        # No digit finer than the uncertainty's leading digit.
        place = 10 ** math.floor(math.log10(uncertainty))
        assert value / place == pytest.approx(round(value / place), abs=1e-6), (value, place)


# -- memory per connection: the server's own, not its mapped log ----------------------------------------
def test_rss_anon_of_this_process_is_part_of_its_rss() -> None:
    anon = rss_anon_bytes(os.getpid())
    assert anon is not None and 0 < anon < psutil.Process().memory_info().rss


def test_a_mapped_shared_file_raises_rss_not_anonymous_memory(tmp_path: Path) -> None:
    me, pid = psutil.Process(), os.getpid()
    path = tmp_path / "server_connections.bin"  # as the server's connection log: a file mapped shared
    with path.open("w+b") as f:
        f.truncate(20 * MB)
        mapped = mmap.mmap(f.fileno(), 20 * MB, mmap.MAP_SHARED)
    try:
        rss, anon = me.memory_info().rss, rss_anon_bytes(pid)
        for offset in range(0, 20 * MB, mmap.PAGESIZE):
            mapped[offset] = 1
        assert me.memory_info().rss - rss >= 18 * MB
        assert rss_anon_bytes(pid) - anon < 4 * MB  # type: ignore[operator]
    finally:
        mapped.close()
    # And anonymous memory the process maps itself does show: a fresh private mapping, touched page by page
    # (a heap allocation may reuse pages an earlier test freed but the allocator kept resident: CI saw 3 MB).
    anon = rss_anon_bytes(pid)
    private = mmap.mmap(-1, 20 * MB, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for offset in range(0, 20 * MB, mmap.PAGESIZE):
            private[offset] = 1
        assert rss_anon_bytes(pid) - anon >= 18 * MB  # type: ignore[operator]
    finally:
        private.close()


def test_the_monitor_samples_anonymous_memory_beside_rss() -> None:
    row = Monitor(os.getpid(), 9, []).sample()  # this process as the "server"; nothing listens on port 9
    assert set(row) == set(COLUMNS)
    assert COLUMNS.index("server_rss_anon_bytes") == COLUMNS.index("server_rss_bytes") + 1
    assert 0 < int(row["server_rss_anon_bytes"]) < int(row["server_rss_bytes"])  # type: ignore[call-overload]


def monitor_rows(rss: list[float], anon: list[float] | None, established: list[int]) -> pd.DataFrame:
    data = {"server_rss_bytes": rss, "server_ESTABLISHED": established}
    if anon is not None:
        data["server_rss_anon_bytes"] = anon
    return pd.DataFrame(data)


def test_memory_per_connection_is_anonymous_growth_per_connection_held() -> None:
    # blocking, as a run showed it: the log grew 2,105,344 B (26,355 records) while 13 connections were held,
    # each of them costing the server ~10 kB of its own memory.
    rss = [16_000_000.0, 16_000_000.0 + 2_105_344 + 130_000]
    anon = [9_000_000.0, 9_130_000.0]
    assert memory_per_connection(monitor_rows(rss, anon, [0, 13])) == 10_000
    # A run recorded before the column existed, or with no RssAnon: RSS, as before.
    assert memory_per_connection(monitor_rows(rss, None, [0, 13])) == round((2_105_344 + 130_000) / 13)
    assert memory_per_connection(monitor_rows(rss, [math.nan, math.nan], [0, 13])) == round((2_105_344 + 130_000) / 13)
    assert math.isnan(memory_per_connection(monitor_rows(rss, anon, [0, 0])))
