"""One run's page: summary.csv and report.html in the run folder; the page helpers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from loadtest.report import charts, timeline_charts
from loadtest.report.load import RunData, load_run
from loadtest.report.rules import account, checks
from loadtest.report.rules.findings import findings
from loadtest.report.rules.kernel_times import kernel_summary
from loadtest.report.rules.summary import CLIENT_BOUND_PERCENT
from loadtest.report.rules.summary_columns import SUMMARY_COLUMNS, summarize
from loadtest.report.rules.timeline import CONNECTIONS_FILE
from loadtest.report.rules.timeline_findings import timeline_findings

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px} table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} .findings li{margin:4px 0} .note{color:#666;font-size:13px}
"""


def ensure_plotlyjs(folder: Path) -> None:
    target = folder / "plotly.min.js"
    if not target.exists():
        target.write_text(get_plotlyjs(), encoding="utf-8")


def page_html(title: str, sections: list[str], style: str = "") -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}{style}</style><script src='plotly.min.js'></script></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def figure_html(fig: go.Figure, div_id: str) -> str:
    return "<div class='chart'>" + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id) + "</div>"


def table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", float_format=lambda v: f"{v:,.3f}".rstrip("0").rstrip("."), border=0)


def timeline_section(run: RunData) -> list[str]:
    """Where the connections' time went: the stages, the accept queue's waits, two connections drawn."""
    frame = run.connections
    if frame is None:
        return [f"<h2>Where the time went</h2><p class='note'>{html.escape(run.timeline_note)}.</p>"]
    frame.to_csv(run.path / CONNECTIONS_FILE, index=False)
    mine = frame[frame["in_window"]]
    counts = account.state_at_close(mine).value_counts().rename_axis("connections of the window").reset_index()
    out = [
        "<h2>Where the time went</h2><p class='note'>Each connection's client record joined to the server's log "
        "on the 4-tuple where there is one, and to the kernel's trace where it ran (all on CLOCK_MONOTONIC); its "
        "first request split into stages that add up to connect start "
        f"→ the reply's last byte. Every connection: {CONNECTIONS_FILE}.</p>"
    ]
    if run.timeline_note:
        out.append(f"<p class='note'>Not all measured: {html.escape(run.timeline_note)}.</p>")
    out.append(f"<p class='note'>The kernel's account: {html.escape(kernel_summary(run.info, frame))}.</p>")
    out.append(table_html(counts))
    for div_id, fig in [
        ("breakdown", timeline_charts.run_breakdown(frame)),
        ("accept-queue-waits", timeline_charts.accept_queue_chart(frame)),
        *timeline_charts.sequence_charts(frame),
    ]:
        if fig is not None:
            out.append(figure_html(fig, div_id))
    return out


def build_run_report(run_dir: Path, loaded: tuple[RunData, dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write summary.csv and report.html into the run folder (`loaded`: the run and its summary row, already
    read); returns their paths."""
    run_dir = Path(run_dir)
    run, row = loaded if loaded is not None else (load_run(run_dir), None)
    row = row if row is not None else summarize(run)
    summary = pd.DataFrame([row], columns=SUMMARY_COLUMNS)
    summary_path = run_dir / "summary.csv"
    summary.to_csv(summary_path, index=False)
    said = findings(run, row) + timeline_findings(run, row["design"], row)
    verdicts = checks.evaluate(run, row)
    checks.write(run_dir, verdicts)
    sections = [
        checks.box_html(checks.failed_lines(verdicts)),
        about(run, row),
        "<h2>Findings</h2><ul class='findings'>" + "".join(f"<li>{html.escape(s)}</li>" for s in said) + "</ul>",
        *timeline_section(run),
        *chart_sections(run),
        "<h2>Summary</h2>" + table_html(summary.T.reset_index().set_axis(["column", "value"], axis=1)),
        *table_sections(run),
    ]
    ensure_plotlyjs(run_dir)
    report_path = run_dir / "report.html"
    report_path.write_text(page_html(f"socklab run {run.run_id}", sections), encoding="utf-8")
    return summary_path, report_path


def about(run: RunData, row: dict[str, Any]) -> str:
    """One line of what ran: the design, its users and window, the counters, when, and the versions."""
    info = run.info
    v = info.get("versions") or {}
    facts = [
        info.get("design", ""),
        row["user_class"],
        f"{row['users']} users",
        f"window {row['duration_s']} s",
        f"counters {row['counters_scope']}",
        f"started {info.get('started_at', '')}",
        f"socklab {v.get('socklab', '')}, Locust {v.get('locust', '')}, kernel {v.get('kernel', '')}",
    ]
    return "<p class='note'>" + " · ".join(html.escape(str(f)) for f in facts) + "</p>"


def chart_sections(run: RunData) -> list[str]:
    """The run's charts: rate, latency, users, the monitor's, connect times."""
    figures = [
        ("throughput", charts.throughput_chart(run)),
        ("latency", charts.latency_chart(run)),
        ("users", charts.users_chart(run)),
        *charts.monitor_charts(run),
        ("connect-time", charts.connect_histogram_chart(run)),
    ]
    sections = ["<h2>Charts</h2>"]
    sections.extend(figure_html(fig, div_id) for div_id, fig in figures if fig is not None)
    if run.monitor is None:
        sections.append(
            "<p class='note'>No monitor.csv in this run: connection, queue and cost charts are absent "
            "(the monitor runs when socklab started the server).</p>"
        )
    return sections


def table_sections(run: RunData) -> list[str]:
    """The latency table and each load process's own figures."""
    sections = []
    if not run.latency.empty:
        sections.append("<h2>Latency (µs)</h2>" + table_html(run.latency))
    load_processes = run.path / "socklab_load_processes.csv"
    if load_processes.exists():
        per_process = pd.read_csv(load_processes)
        if not per_process.empty:
            per_process["client_bound"] = per_process["cpu_percent"] >= CLIENT_BOUND_PERCENT
            sections.append(
                "<h2>Load processes</h2><p class='note'>Each worker (or the local runner): where it ran, its "
                f"requests in the window and its CPU; at ≥ {CLIENT_BOUND_PERCENT:g} % of a core a process "
                "measures itself, not the server.</p>" + table_html(per_process)
            )
    return sections
