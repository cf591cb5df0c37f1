"""Every use socklab makes of Locust's private objects, in one place: a Locust upgrade is one file to check.

Read from Locust 2.47's source (``locust/stats.py``, ``locust/web.py``):

- ``StatsCSVFileWriter`` writes its rows through ``_requests_data_rows``, ``_failures_data_rows`` and
  ``_exceptions_data_rows``; socklab writes the final CSVs itself after the last worker report
  (Locust's writer stops before those arrive), so it calls them.
- The web UI's page arguments (``template_args``, refreshed by ``update_template_args``) carry the
  extended tabs and the form's Host; the Flask request's form is what ``/swarm`` reads.
"""

from __future__ import annotations

import csv
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
