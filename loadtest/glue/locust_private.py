"""Every use socklab makes of Locust's private objects, in one place: a Locust upgrade is one file to check.

Read from Locust 2.47's source (``locust/stats.py``, ``locust/web.py``):

- ``StatsCSVFileWriter`` writes its rows through ``_requests_data_rows``, ``_failures_data_rows`` and
  ``_exceptions_data_rows``; socklab writes the final CSVs itself after the last worker report
  (Locust's writer stops before those arrive), so it calls them.
- ``Runner.stop()`` logs its caller through ``inspect.stack()``, whose first call in a process maps every
  loaded module to its source file (23 ms here, more under load): socklab makes that first call at init.
- The web UI's page arguments (``template_args``, refreshed by ``update_template_args``) carry the
  extended tabs and the form's Host; the Flask request's form is what ``/swarm`` reads.
"""

from __future__ import annotations

import csv
import inspect
from collections.abc import Callable
from typing import Any

from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter


def csv_writer(environment: Any, prefix: str, full_history: bool) -> StatsCSVFileWriter:
    return StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, prefix, full_history)


def write_final_csvs(writer: StatsCSVFileWriter, prefix: str) -> None:
    """The stats, failures and exceptions CSVs, once more, as they stand now."""
    for suffix, columns, rows in (
        ("_stats.csv", writer.requests_csv_columns, writer._requests_data_rows),
        ("_failures.csv", writer.failures_columns, writer._failures_data_rows),
        ("_exceptions.csv", writer.exceptions_columns, writer._exceptions_data_rows),
    ):
        with open(prefix + suffix, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(columns)
            rows(out)


def wrap_template_args(web_ui: Any, after: Callable[[dict[str, Any]], None]) -> None:
    """Run `after(template_args)` each time Locust refreshes the page's arguments."""
    locust_update = web_ui.update_template_args

    def update_template_args() -> None:
        locust_update()
        after(web_ui.template_args)

    web_ui.update_template_args = update_template_args


def replace_form(request: Any, items: list[tuple[str, str]]) -> None:
    """The form Locust's ``/swarm`` handler will read, in place of the one the page sent."""
    from werkzeug.datastructures import ImmutableMultiDict

    request.form = ImmutableMultiDict(items)


def stats_sink(environment: Any) -> Callable[[str, str, dict[int, int], int, float], None]:
    """Finished requests into Locust's statistics in bulk, as its own ``request`` listener would log them
    one by one (``runner.on_request`` → ``RequestStats.log_request``): the count, the response times
    in Locust's buckets (its module-level ``bucket_response_time``, replaceable as Locust documents),
    their total, min and max, the per-second count (in the second ``now`` names), the content length —
    on the entry and on the total.  Failures do not come here: they take Locust's own path, one event each."""
    from locust import stats as locust_stats

    from loadtest.declare.kinds import NOT_LOCUST_EVENTS

    def sink(request_type: str, name: str, counts: dict[int, int], length: int, now: float) -> None:
        if request_type in NOT_LOCUST_EVENTS:
            return
        stats = environment.runner.stats
        bucket = locust_stats.bucket_response_time
        n = sum(counts.values())
        total_ms = sum(us * k for us, k in counts.items()) / 1000
        low, high = min(counts) / 1000, max(counts) / 1000
        buckets: dict[int, int] = {}
        for us, k in counts.items():
            b = bucket(us / 1000)
            buckets[b] = buckets.get(b, 0) + k
        second = int(now)
        for entry in (stats.total, stats.entries[(name, request_type)]):
            if (
                entry.use_response_times_cache
                and entry.last_request_timestamp
                and second > int(entry.last_request_timestamp)
            ):
                entry._cache_response_times(second - 1)  # as StatsEntry.log does when a second starts
            entry.num_requests += n
            entry.total_response_time += total_ms
            entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
            entry.max_response_time = max(entry.max_response_time, high)
            times = entry.response_times
            for b, k in buckets.items():
                times[b] += k
            entry.num_reqs_per_sec[second] += n
            entry.last_request_timestamp = now
            entry.total_content_length += length

    return sink


def warm_stop_path() -> None:
    """Make Locust's ``Runner.stop()`` cheap: its ``inspect.stack()`` builds a module-to-file map on first use
    (23 ms here), which stalled every user just as a test stopped.  Built now, at init, it is reused then."""
    inspect.stack(context=1)
