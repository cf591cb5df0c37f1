"""The charts of one run's page (plotly figures built from the run's files)."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from loadtest.client.latency import recorded
from loadtest.declare.charts import CHARTS, Chart
from loadtest.declare.kinds import CONNECT, FIRST_REPLY, OPS
from loadtest.report.load import RunData, merged_histogram
from loadtest.report.rules.summary import CLIENT_BOUND_PERCENT

# plotly_white's look in a template a fraction of its size: plotly deep-copies a figure's template,
# and the full one cost ~30 ms a figure — a third of a run's report.
pio.templates["socklab"] = go.layout.Template(
    layout={
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "colorway": [
            "#636efa",
            "#EF553B",
            "#00cc96",
            "#ab63fa",
            "#FFA15A",
            "#19d3f3",
            "#FF6692",
            "#B6E880",
            "#FF97FF",
            "#FECB52",
        ],
        "xaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8"},
        "yaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8"},
    }
)
pio.templates.default = "socklab"


def layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _elapsed(run: RunData, timestamps: pd.Series) -> pd.Series:
    start = (run.info.get("window") or {}).get("start") or float(timestamps.min())
    return timestamps - start


def throughput_series(run: RunData) -> pd.DataFrame:
    """Completed requests per second per op, inside the measured window, from Locust's per-second counts.

    Rows: ``t`` (seconds into the window, the middle of the part of that second inside it), ``series``
    (op and name), ``rps``.  Every second the window covers by at least half is a point — one where
    nothing finished is 0, not missing — and a second the window covers only partly is divided by the
    part it covers.  (Locust's history CSV cannot serve: its rows are stamped in whole seconds, one a
    second, so a 2 s window may hold a single row and no rate.)
    """
    counts = run.per_second
    empty = pd.DataFrame(columns=["t", "series", "rps"])
    if counts.empty:
        return empty
    per_op = counts[counts["type"].isin(OPS)]
    if per_op.empty:
        per_op = counts
    window = run.info.get("window") or {}
    start = float(window.get("start") or per_op["second"].min())
    stop = float(window.get("stop") or per_op["second"].max() + 1)
    rows = []
    for (kind, name), g in per_op.groupby(["type", "name"]):
        done = g.groupby("second")["count"].sum()
        for second in range(math.floor(start), math.ceil(stop)):
            low, high = max(float(second), start), min(second + 1.0, stop)
            if high - low >= 0.5:
                rows.append(
                    (round((low + high) / 2 - start, 3), f"{kind} {name}".strip(), done.get(second, 0) / (high - low))
                )
    return pd.DataFrame(rows, columns=["t", "series", "rps"]) if rows else empty


def throughput_chart(run: RunData) -> go.Figure | None:
    series = throughput_series(run)
    if series.empty:
        return None
    fig = go.Figure()
    for name, g in series.groupby("series", sort=False):
        fig.add_scatter(x=g["t"], y=g["rps"], mode="lines", name=str(name))
    fig.update_xaxes(title="seconds into the measured window")
    fig.update_yaxes(title="requests/s", rangemode="tozero")
    return layout(fig, "Throughput (completed requests per second, from counts, in the measured window)")


def latency_chart(run: RunData) -> go.Figure | None:
    lat = run.latency
    if lat.empty:
        return None
    cols = [c for c in ("p50_us", "p90_us", "p95_us", "p99_us", "p99.9_us", "p99.99_us", "max_us") if c in lat]
    fig = go.Figure()
    for _, r in lat.iterrows():
        if not r["count"]:
            continue
        fig.add_scatter(
            x=[c.replace("_us", "") for c in cols],
            y=[r[c] / 1000 for c in cols],
            mode="lines+markers",
            name=f"{r['type']} {r['name']}" + (" (service)" if r.get("measure") == "service" else ""),
        )
    fig.update_yaxes(type="log", title="ms (µs resolution)")
    return layout(fig, "Latency percentiles (socklab µs histograms)")


def monitor_chart(run: RunData, chart: Chart) -> go.Figure | None:
    """One of loadtest.declare.columns.CHARTS over the run: the same chart the live page draws."""
    mon = run.monitor
    if mon is None:
        return None
    x = _elapsed(run, mon["timestamp"])
    fig = go.Figure()
    for series in chart.series:
        y = mon[series.column] * series.scale + series.offset
        if chart.stacked and not y.any():
            continue  # a state no socket was in: no band
        fig.add_scatter(
            x=x,
            y=y,
            mode="lines",
            name=series.label(),
            line={"dash": series.dash},
            stackgroup=chart.key if chart.stacked else None,
        )
    if chart.key == "cpu":
        fig.add_hline(y=CLIENT_BOUND_PERCENT, line_dash="dot", annotation_text="client-bound")
    fig.update_xaxes(title="seconds into the run")
    fig.update_yaxes(title=chart.y_title, rangemode="tozero")
    title = chart.title
    if chart.key == "kernel-counters":
        title += f" ({mon['counters_scope'].iloc[-1]})"
    return layout(fig, title)


def monitor_charts(run: RunData) -> list[tuple[str, go.Figure | None]]:
    return [(chart.key, monitor_chart(run, chart)) for chart in CHARTS]


def connect_histogram_chart(run: RunData) -> go.Figure | None:
    hist = merged_histogram(run, (CONNECT,))
    first = merged_histogram(run, (FIRST_REPLY,))
    if hist is None:
        return None
    fig = go.Figure()
    # Log-spaced bins: a SYN retry at 1 s, 2 s, 3 s stands apart from sub-ms handshakes.
    edges = [10 ** (k / 20) for k in range(-80, 101)]  # 0.0001 ms … 100 s
    for label, h in (("connect()", hist), ("first reply byte", first)):
        if h is None:
            continue
        counts = [0] * (len(edges) - 1)
        for value, n in zip(*recorded(h), strict=True):
            ms = h.get_highest_equivalent_value(int(value)) / 1000  # as hdrh's iterator reports a bucket
            k = min(max(math.floor(20 * math.log10(max(ms, 1e-4))) + 80, 0), len(counts) - 1)
            counts[k] += int(n)
        fig.add_bar(
            x=edges[:-1],
            y=counts,
            width=[b - a for a, b in itertools.pairwise(edges)],
            offset=0,
            name=label,
            opacity=0.7,
        )
    for s in (1, 2, 3):
        fig.add_vline(x=s * 1000, line_dash="dot", annotation_text=f"{s} s")
    fig.update_xaxes(type="log", title="ms (log scale)")
    fig.update_yaxes(type="log", title="connections")
    return layout(fig, "Connect time and first-reply time (SYN retries show as clusters at about 1, 2, 3 s)")


def users_chart(run: RunData) -> go.Figure | None:
    """Completed requests per user, sorted: a fair server draws a flat line, a starving one a cliff."""
    users = run.users
    if users is None or users.empty:
        return None
    ordered = users.sort_values("requests", ascending=False).reset_index(drop=True)
    fig = go.Figure()
    fig.add_bar(
        x=list(range(1, len(ordered) + 1)),
        y=ordered["requests"],
        name="completed requests",
        customdata=ordered[["user_id", "longest_wait_ms"]],
        hovertemplate="user %{customdata[0]}: %{y} requests, longest wait %{customdata[1]} ms<extra></extra>",
    )
    starved = int((ordered["requests"] == 0).sum())
    fig.update_xaxes(title="users, most served first")
    fig.update_yaxes(title="completed requests in the window", rangemode="tozero")
    return layout(fig, f"Requests per user ({len(ordered) - starved} served, {starved} starved)")
