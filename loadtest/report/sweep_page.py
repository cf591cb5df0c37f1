"""The sweep's page: knees, latency against offered load, achieved against offered, and the
percentile distribution of the step just below each knee.  Files: sweep.csv (every step),
knees.csv (one row per scenario and design), sweep.html."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from loadtest.declare.kinds import OPS
from loadtest.report.charts import layout
from loadtest.report.load import load_run, merged_histogram
from loadtest.report.page import ensure_plotlyjs, figure_html, page_html, table_html
from loadtest.report.rules.knee import Ladder, knee_line

PERCENTILE_TICKS = 5  # HdrHistogram's percentile iterator: ticks per half distance to 100 %


def build_sweep(ladders: list[Ladder], out: Path) -> Path:
    rows = []
    for ladder in ladders:
        for step in ladder.steps:
            if step.row is not None:
                measured = {k: v for k, v in step.row.items() if k != "offered_rps"}
                rows.append(
                    {
                        "scenario": ladder.scenario,
                        "design": ladder.design,
                        "offered_rps": step.rate,
                        "verdict": step.verdict,
                        **measured,
                    }
                )
    steps = pd.DataFrame(rows)
    steps.to_csv(out / "sweep.csv", index=False)
    knees = pd.DataFrame(
        [
            {
                "scenario": lad.scenario,
                "design": lad.design,
                "knee_rps": lad.knee,
                "gave_out_first": lad.gave_out,
                "steps": len(lad.steps),
            }
            for lad in ladders
        ]
    )
    knees.to_csv(out / "knees.csv", index=False)
    sections = [
        "<h2>Knees</h2><p class='note'>The knee: the highest offered rate a design sustained with achieved "
        "≥ 95 % (less 2 requests at the window's edges) "
        "of offered, p99 (from the intended start) within the bound and no failures; past it, what gave out "
        "first, read from the first step over.</p>",
        "<ul class='findings'>" + "".join(f"<li>{html.escape(knee_line(lad))}</li>" for lad in ladders) + "</ul>",
        table_html(knees),
    ]
    for i, (scenario, group) in enumerate(steps.groupby("scenario", sort=False) if len(steps) else []):
        sections.append(f"<h2>{html.escape(str(scenario))}</h2>")
        sections.append(figure_html(latency_against_load(group), f"latency-{i}"))
        sections.append(figure_html(achieved_against_offered(group), f"achieved-{i}"))
        below = [lad for lad in ladders if lad.scenario == scenario]
        dist = percentile_distribution(below)
        if dist is not None:
            sections.append(figure_html(dist, f"distribution-{i}"))
    if len(steps):
        sections.append("<h2>Every step</h2>" + table_html(steps))
    ensure_plotlyjs(out)
    page = out / "sweep.html"
    page.write_text(page_html("socklab sweep: latency against offered load", sections), encoding="utf-8")
    return page


def latency_against_load(group: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for design, v in group.sort_values("offered_rps").groupby("design", sort=False):
        for col, dash in (("latency_p50_ms", "dot"), ("latency_p99_ms", "solid"), ("latency_p99.9_ms", "dash")):
            fig.add_scatter(
                x=v["offered_rps"],
                y=v[col],
                mode="lines+markers",
                line={"dash": dash},
                name=f"{design} {col.split('_')[1]}",
            )
    fig.update_xaxes(title="offered rate, requests/s", type="log")
    fig.update_yaxes(title="latency from the intended start, ms", type="log")
    return layout(fig, "Latency against offered load (p50 dotted, p99 solid, p99.9 dashed)", 420)


def achieved_against_offered(group: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    top = float(group["offered_rps"].max())
    fig.add_scatter(x=[1, top], y=[1, top], mode="lines", name="achieved = offered", line={"dash": "dot"})
    for design, v in group.sort_values("offered_rps").groupby("design", sort=False):
        fig.add_scatter(x=v["offered_rps"], y=v["rps"], mode="lines+markers", name=str(design))
    fig.update_xaxes(title="offered, requests/s", type="log")
    fig.update_yaxes(title="achieved, requests/s", type="log")
    return layout(fig, "Achieved against offered: where each design leaves the diagonal", 420)


def percentile_distribution(ladders: list[Any]) -> go.Figure | None:
    """HdrHistogram's percentile distribution (latency against 1/(1−percentile)) of each design's last
    step within the bound."""
    fig, drawn = go.Figure(), False
    for ladder in ladders:
        good = [s for s in ladder.steps if s.ok]
        if not good:
            continue
        step = max(good, key=lambda s: s.rate)
        hist = merged_histogram(load_run(step.cell.folder), OPS, with_unfinished=True)
        if hist is None:
            continue
        xs, ys = [], []
        for item in hist.get_percentile_iterator(PERCENTILE_TICKS):
            p = item.percentile_level_iterated_to
            if p >= 100:
                break
            xs.append(1 / (1 - p / 100))
            ys.append(item.value_iterated_to / 1000)
        fig.add_scatter(x=xs, y=ys, mode="lines", name=f"{ladder.design} at {step.rate:,.0f} req/s")
        drawn = True
    if not drawn:
        return None
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    fig.update_xaxes(
        title="percentile",
        type="log",
        tickvals=ticks,
        ticktext=["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"],
    )
    fig.update_yaxes(title="latency, ms", type="log")
    return layout(fig, "Percentile distribution just below each knee (HdrHistogram's plot)", 420)
