"""Reports: a one-row summary and an offline HTML page per run, and a comparison across runs.

Input is only the files a run leaves in its folder (plain data, one-way flow):
``run.json`` (what ran, the measured window, Locust's totals and failures),
``socklab_latency.csv`` and ``socklab_latency_hist.json`` (µs histograms),
``monitor.csv`` (server cost, sockets by state, kernel counters) and Locust's
``locust_stats.json`` (requests done per second).  So ``socklab
report RUN_DIR`` rebuilds the same products from the files alone.

- :mod:`~loadtest.report.load` — a run folder as a :class:`RunData`;
- :mod:`~loadtest.report.rules.summary` — the summary row and the client-/machine-bound rule;
- :mod:`~loadtest.report.rules.findings` — sentences read off the data, keyed on the server's traits;
- :mod:`~loadtest.report.charts` — one run's plotly figures;
- :mod:`~loadtest.report.page` — one run's ``summary.csv`` and ``report.html``;
- :mod:`~loadtest.report.compare_page` — several runs: ``summary.csv`` and ``compare.html``.

Pages are offline: the plotly JavaScript is written once into the page's
folder (``plotly.min.js``) and every page there loads it from beside itself.
"""

from loadtest.report.compare_page import build_compare
from loadtest.report.load import RunData, load_run
from loadtest.report.page import build_run_report
from loadtest.report.rules.summary import SUMMARY_COLUMNS, load_bound, summarize

__all__ = ["SUMMARY_COLUMNS", "RunData", "build_compare", "build_run_report", "load_bound", "load_run", "summarize"]
