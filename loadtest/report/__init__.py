"""Reports: a one-row summary and an offline HTML page per run, and a comparison across runs.

Input is only the files a run leaves in its folder (plain data, one-way flow):
``run.json`` (what ran, the measured window, Locust's totals and failures),
``socklab_latency.csv`` and ``socklab_latency_hist.json`` (µs histograms),
``monitor.csv`` (server cost, sockets by state, kernel counters) and Locust's
``locust_stats.json`` (requests done per second).  So ``socklab
report RUN_DIR`` rebuilds the same products from the files alone.

The rules (``loadtest.report.rules``: what the figures are and mean, no rendering):

- :mod:`~loadtest.report.rules.summary_columns` — every column of summary.csv with its computation, and the
  row (``summarize``); :mod:`~loadtest.report.rules.server_columns` — its server-side columns;
  :mod:`~loadtest.report.rules.summary` — their arithmetic and the client-/machine-bound rule;
- :mod:`~loadtest.report.rules.timeline` — each connection's stages, the client's records joined to the
  server's log (:mod:`~loadtest.report.rules.server_log`); :mod:`~loadtest.report.rules.account` — the
  window's account of every user's time;
- :mod:`~loadtest.report.rules.findings` — sentences read off the data, keyed on the server's traits;
- :mod:`~loadtest.report.rules.timeline_findings` — sentences read off the joined connections;
- :mod:`~loadtest.report.rules.answer` — the standings and their rule (:mod:`~loadtest.report.rules.ranked`'s
  types, :mod:`~loadtest.report.rules.estimates`' server-CPU estimates), with
  :mod:`~loadtest.report.rules.headlines`;
- :mod:`~loadtest.report.rules.checks` — the run's self-check (checks.csv);
- :mod:`~loadtest.report.rules.judges` — each scenario's and experiment's check:
  :mod:`~loadtest.report.rules.stevens`, :mod:`~loadtest.report.rules.claims`,
  :mod:`~loadtest.report.rules.workers`; :mod:`~loadtest.report.rules.knee` — the sweep's.

The rendering: :mod:`~loadtest.report.load` reads a run folder as a :class:`RunData`;
:mod:`~loadtest.report.charts` and :mod:`~loadtest.report.timeline_charts` draw one run's plotly figures;
:mod:`~loadtest.report.page` writes one run's ``summary.csv`` and ``report.html``;
:mod:`~loadtest.report.compare_page` several runs' ``summary.csv``, ``standings.csv`` and ``compare.html``;
:mod:`~loadtest.report.sweep_page` the sweep's ``sweep.html``.

Pages are offline: the plotly JavaScript is written once into the page's
folder (``plotly.min.js``) and every page there loads it from beside itself.
"""

from loadtest.report.compare_page import build_compare
from loadtest.report.load import RunData, load_run
from loadtest.report.page import build_run_report
from loadtest.report.rules.summary import load_bound
from loadtest.report.rules.summary_columns import SUMMARY_COLUMNS, summarize

__all__ = ["SUMMARY_COLUMNS", "RunData", "build_compare", "build_run_report", "load_bound", "load_run", "summarize"]
