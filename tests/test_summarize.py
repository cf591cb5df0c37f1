"""summarize() over a recorded run reads its figures generically from the monitor's columns.
(That every summary column is declared and computed is tested in test_summary_columns.py.)"""

from __future__ import annotations

from pathlib import Path


def test_the_summary_reads_the_accept_queue_and_backlog_from_the_monitor() -> None:
    from loadtest.report import load_run, summarize

    fixture = Path(__file__).parent / "fixtures" / "blocking_conn_storm"
    computed = summarize(load_run(fixture))
    assert computed["peak_accept_queue"] == 3 and computed["backlog"] == 2  # read generically from the monitor
