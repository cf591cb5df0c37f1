"""The comparison across runs: a combined summary.csv and compare.html."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from loadtest.report import timeline_charts
from loadtest.report.charts import layout
from loadtest.report.findings import compare_findings
from loadtest.report.load import load_run
from loadtest.report.page import ensure_plotlyjs, figure_html, page_html, table_html
from loadtest.report.summary import SUMMARY_COLUMNS, summarize
from loadtest.scenarios import SCENARIOS, Check


def build_compare(run_dirs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write the combined summary.csv and compare.html for several runs into out_dir."""
    runs = [load_run(Path(d)) for d in run_dirs]
    rows = [summarize(r) for r in runs]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.csv"
    summary.to_csv(summary_path, index=False)
    sections = [
        "<h2>Findings</h2><ul class='findings'>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in compare_findings(summary))
        + "</ul>"
    ]
    summary["scenario_label"] = summary["scenario"].where(
        summary["scenario"].astype(str) != "", summary["user_class"] + " " + summary["op"]
    )
    for i, (scenario, g) in enumerate(summary.groupby("scenario_label", sort=False)):
        sections.append(f"<h2>{html.escape(str(scenario))}</h2>")
        for k, fig in enumerate(compare_charts(g)):
            sections.append(figure_html(fig, f"s{i}-{k}"))
        medians = [(f"{summary.loc[j, 'variant']} {summary.loc[j, 'users']}u", pick)
                   for j in g.index for name, pick in timeline_charts.picks(timeline_charts.joined_in_window(
                       runs[j].connections)) if name == "median"]  # fmt: skip
        breakdown = timeline_charts.compare_breakdown(medians)
        if breakdown is not None:
            sections.append(figure_html(breakdown, f"s{i}-breakdown"))
    for name, scenario in SCENARIOS.items():  # a scenario that carries a check: its table and verdicts
        mine = [i for i, value in enumerate(summary["scenario"]) if value == name]
        check = scenario.checker()
        result = check([runs[i] for i in mine], summary.iloc[mine]) if check and mine else None
        if result is not None:
            sections.append(check_section(result))
    sections.append("<h2>All runs</h2>" + table_html(summary.drop(columns=["scenario_label"])))
    sections.append(
        "<p class='note'>Per-run pages: "
        + " · ".join(
            f"<a href='{html.escape(str(Path(r.path).resolve()))}/report.html'>{html.escape(r.run_id)}</a>"
            for r in runs
        )
        + "</p>"
    )
    ensure_plotlyjs(out_dir)
    page = out_dir / "compare.html"
    page.write_text(page_html("socklab comparison", sections), encoding="utf-8")
    return summary_path, page


def check_section(result: Check) -> str:
    """A scenario's check: its table, and each claim said to hold or not here, with the numbers."""
    return (
        f"<h2>{html.escape(result.title)}</h2><p class='note'>{html.escape(result.note)}</p>"
        + (table_html(result.table) if result.table is not None else "")
        + "<ul class='findings'>"
        + "".join(f"<li>{html.escape(v)}</li>" for v in result.verdicts)
        + "</ul>"
    )


def compare_charts(g: pd.DataFrame) -> list[go.Figure]:
    figs = []
    by_variant = list(g.sort_values("users").groupby("variant", sort=False))
    fig = go.Figure()
    for variant, v in by_variant:
        fig.add_scatter(x=v["users"], y=v["rps"], mode="lines+markers", name=str(variant))
    fig.update_xaxes(title="users", type="log" if g["users"].nunique() > 2 else "linear")
    fig.update_yaxes(title="requests/s", rangemode="tozero")
    figs.append(layout(fig, "Throughput against users"))
    fig = go.Figure()
    for variant, v in by_variant:
        for col, dash in (("latency_p50_ms", "solid"), ("latency_p99_ms", "dash")):
            fig.add_scatter(
                x=v["users"], y=v[col], mode="lines+markers", line={"dash": dash}, name=f"{variant} {col.split('_')[1]}"
            )
    fig.update_xaxes(title="users")
    fig.update_yaxes(title="ms", type="log")
    figs.append(layout(fig, "Latency p50 and p99 against users"))
    last = g.sort_values("users").groupby("variant", sort=False).tail(1)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "packets dropped at a full accept queue (ListenOverflows)",
            "server CPU µs per request",
            "TIME_WAIT (peak)",
        ),
    )
    fig.add_bar(x=last["variant"], y=last["listen_overflows"], name="overflows", row=1, col=1)
    fig.add_bar(x=last["variant"], y=last["server_cpu_us_per_request"], name="CPU µs/request", row=1, col=2)
    fig.add_bar(x=last["variant"], y=last["peak_time_wait"], name="TIME_WAIT", row=1, col=3)
    figs.append(layout(fig, "At the highest load: overflows, CPU per request, TIME_WAIT", 360))
    est = last["peak_established"].where(last["peak_established"] > 0)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("RSS growth KiB per connection", "threads per connection", "peak connections (server side)"),
    )
    fig.add_bar(x=last["variant"], y=last["rss_per_connection_bytes"] / 1024, name="RSS/conn", row=1, col=1)
    fig.add_bar(x=last["variant"], y=last["peak_threads"] / est, name="threads/conn", row=1, col=2)
    fig.add_bar(x=last["variant"], y=last["peak_established"], name="ESTABLISHED", row=1, col=3)
    figs.append(layout(fig, "Memory, threads and connections at the highest load", 360))
    return figs


