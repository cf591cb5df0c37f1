"""Reports: a one-row summary and an offline HTML page per run, and a comparison across runs.

Input is only the files a run leaves in its folder (plain data, one-way flow):
``run.json`` (what ran, the measured window, Locust's totals and failures),
``socklab_latency.csv`` and ``socklab_latency_hist.json`` (µs histograms),
``monitor.csv`` (server cost, sockets by state, kernel counters) and Locust's
``locust_stats_history.csv`` (request counts per second).  So ``socklab
report RUN_DIR`` rebuilds the same products from the files alone.

Pages are offline: the plotly JavaScript is written once into the page's
folder (``plotly.min.js``) and every page there loads it from beside itself.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from hdrh.histogram import HdrHistogram
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from loadtest.latency import read_histograms
from loadtest.sockdiag import REPORTED_STATES

OPS = ("ECHO", "SLEEP", "WORK")
CLIENT_BOUND_PERCENT = 90.0
SUMMARY_COLUMNS = [
    "run_id",
    "scenario",
    "variant",
    "user_class",
    "op",
    "users",
    "duration_s",
    "requests",
    "failures",
    "failure_classes",
    "rps",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_p99.9_ms",
    "latency_max_ms",
    "connect_p50_ms",
    "connect_p99_ms",
    "first_reply_p99_ms",
    "first_reply_max_ms",
    "listen_overflows",
    "listen_drops",
    "syncookies_sent",
    "counters_scope",
    "peak_accept_queue",
    "backlog",
    "peak_established",
    "peak_time_wait",
    "peak_syn_sent",
    "server_cpu_us_per_request",
    "peak_rss_bytes",
    "rss_per_connection_bytes",
    "peak_threads",
    "peak_fds",
    "loadgen_peak_cpu_percent",
    "loadgen_median_cpu_percent",
    "client_bound",
    "machine_cpu_percent",
]


# -- loading -------------------------------------------------------------------------------


@dataclass
class RunData:
    path: Path
    info: dict[str, Any]
    latency: pd.DataFrame
    histograms: dict[tuple[str, str], HdrHistogram]
    monitor: pd.DataFrame | None
    history: pd.DataFrame | None

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or self.path.name)


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a socklab run folder (no run.json)")
    info = json.loads(info_path.read_text())
    latency_path = run_dir / "socklab_latency.csv"
    latency = pd.read_csv(latency_path) if latency_path.exists() else pd.DataFrame(columns=["type", "name"])
    hist_path = run_dir / "socklab_latency_hist.json"
    histograms = read_histograms(hist_path) if hist_path.exists() else {}
    monitor_path = run_dir / "monitor.csv"
    monitor = pd.read_csv(monitor_path) if monitor_path.exists() else None
    if monitor is not None and monitor.empty:
        monitor = None
    history_path = run_dir / "locust_stats_history.csv"
    history = pd.read_csv(history_path) if history_path.exists() else None
    return RunData(run_dir, info, latency, histograms, monitor, history)


# -- the summary row ----------------------------------------------------------------------------


def _merged(run: RunData, types: tuple[str, ...]) -> HdrHistogram | None:
    hists = [h for (kind, _), h in run.histograms.items() if kind in types]
    if not hists:
        return None
    merged = HdrHistogram(
        hists[0].lowest_trackable_value, hists[0].highest_trackable_value, hists[0].significant_figures
    )
    for h in hists:
        merged.add(h)
    return merged


def _ms(hist: HdrHistogram | None, percentile: float | None) -> float:
    """A percentile (None = max) in ms with µs precision; NaN without data."""
    if hist is None or hist.get_total_count() == 0:
        return math.nan
    us = hist.get_max_value() if percentile is None else hist.get_value_at_percentile(percentile)
    return round(us / 1000, 3)


def _window_rows(run: RunData) -> pd.DataFrame | None:
    """Monitor rows inside the measured window (all rows if the window is unknown)."""
    mon = run.monitor
    if mon is None:
        return None
    window = run.info.get("window") or {}
    if window.get("start") and window.get("stop"):
        inside = mon[(mon["timestamp"] >= window["start"]) & (mon["timestamp"] <= window["stop"] + 0.5)]
        if len(inside):
            return inside
    return mon


def summarize(run: RunData) -> dict[str, Any]:
    info = run.info
    options = info.get("options") or {}
    lat = run.latency
    ops = lat[lat["type"].isin(OPS)] if len(lat) else lat
    successes = int(ops["count"].sum()) if len(ops) else 0
    failed_ops = int(ops["failures"].sum()) if len(ops) else 0
    failures = info.get("failures") or []
    classes: dict[str, int] = {}
    for f in failures:
        classes[f["class"]] = classes.get(f["class"], 0) + int(f["occurrences"])
    seconds = float((info.get("window") or {}).get("seconds") or 0.0)
    op_hist = _merged(run, OPS)
    connect = _merged(run, ("CONNECT",))
    first_reply = _merged(run, ("FIRST_REPLY",))
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "scenario": info.get("scenario", ""),
        "variant": info.get("variant", ""),
        "user_class": ",".join(info.get("user_classes") or []),
        "op": options.get("op", ""),
        "users": info.get("users"),
        "duration_s": round(seconds, 3),
        "requests": successes + failed_ops,
        "failures": sum(classes.values()),
        "failure_classes": "; ".join(f"{k}={v}" for k, v in sorted(classes.items())),
        "rps": round(successes / seconds, 1) if seconds > 0 else math.nan,
        "latency_p50_ms": _ms(op_hist, 50),
        "latency_p90_ms": _ms(op_hist, 90),
        "latency_p99_ms": _ms(op_hist, 99),
        "latency_p99.9_ms": _ms(op_hist, 99.9),
        "latency_max_ms": _ms(op_hist, None),
        "connect_p50_ms": _ms(connect, 50),
        "connect_p99_ms": _ms(connect, 99),
        "first_reply_p99_ms": _ms(first_reply, 99),
        "first_reply_max_ms": _ms(first_reply, None),
        "counters_scope": info.get("counters_scope", ""),
    }
    mon = run.monitor
    win = _window_rows(run)
    if mon is not None and win is not None:
        last = mon.iloc[-1]
        cpu = mon["server_cpu_user_s"] + mon["server_cpu_system_s"]
        window = info.get("window") or {}
        if window.get("start") and window.get("stop"):
            # The server's cumulative CPU at the window's edges, read off the samples.
            cpu_start, cpu_stop = np.interp([window["start"], window["stop"]], mon["timestamp"], cpu)
        else:
            cpu_start, cpu_stop = cpu.iloc[0], cpu.iloc[-1]
        row.update(
            listen_overflows=int(last["TcpExt_ListenOverflows"]),
            listen_drops=int(last["TcpExt_ListenDrops"]),
            syncookies_sent=int(last["TcpExt_SyncookiesSent"]),
            counters_scope=str(last["counters_scope"]),
            peak_accept_queue=int(mon["accept_queue"].max()),
            backlog=int(mon["backlog"].max()),
            peak_established=int(mon["server_ESTABLISHED"].max()),
            peak_time_wait=int((mon["server_TIME_WAIT"] + mon["client_TIME_WAIT"]).max()),
            peak_syn_sent=int(mon["client_SYN_SENT"].max()),
            server_cpu_us_per_request=(
                round(float(cpu_stop - cpu_start) / successes * 1e6, 2) if successes else math.nan
            ),
            peak_rss_bytes=int(mon["server_rss_bytes"].max()),
            # Growth over the first sample (the idle server) per connection held at peak.
            rss_per_connection_bytes=(
                round((mon["server_rss_bytes"].max() - mon["server_rss_bytes"].iloc[0]) / est_peak)
                if (est_peak := int(mon["server_ESTABLISHED"].max()))
                else math.nan
            ),
            peak_threads=int(mon["server_threads"].max()),
            peak_fds=int(mon["server_fds"].max()),
            loadgen_peak_cpu_percent=float(win["loadgen_cpu_percent_max"].max()),
            loadgen_median_cpu_percent=float(win["loadgen_cpu_percent_max"].median()),
        )
        row["client_bound"] = bool(row["loadgen_median_cpu_percent"] >= CLIENT_BOUND_PERCENT)
        # Server and load generator together, median over the window, % of one core.
        row["machine_cpu_percent"] = float((win["server_cpu_percent"] + win["loadgen_cpu_percent_total"]).median())
    else:
        for col in SUMMARY_COLUMNS:
            row.setdefault(col, math.nan)
        row["client_bound"] = ""
    return {col: row.get(col, math.nan) for col in SUMMARY_COLUMNS}


def findings(run: RunData, row: dict[str, Any]) -> list[str]:
    """Plain sentences read off the data."""
    out = []
    name = row["variant"] or "server"
    if row["requests"]:
        out.append(
            f"{name}: {row['requests']:,} {row['op'] or 'requests'} in {row['duration_s']:g} s = {row['rps']:,} req/s "
            f"with {row['users']} users; latency p50 {row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms."
        )
    if row["op"] == "SLEEP" and row["variant"] == "blocking" and row["rps"] == row["rps"]:
        sleep_ms = (run.info.get("options") or {}).get("sleep_ms") or 0
        if sleep_ms:
            out.append(
                f"blocking serves one client at a time: {row['rps']} req/s against 1 / {sleep_ms} ms = "
                f"{1000 / sleep_ms:g} req/s, whatever the number of users."
            )
    overflows = row.get("listen_overflows")
    if isinstance(overflows, int) and overflows > 0:
        text = (
            f"{name}: {overflows:,} SYNs dropped at backlog {row['backlog']} (ListenOverflows, "
            f"{row['counters_scope']} counters); the accept queue peaked at {row['peak_accept_queue']}"
        )
        p99 = row["connect_p99_ms"]
        if p99 == p99 and p99 >= 900:
            text += f"; connect p99 {p99 / 1000:.2f} s, the kernel's SYN retry schedule (about 1, 2, 3 s)"
        out.append(text + ".")
    queued = row.get("peak_accept_queue")
    if isinstance(queued, int) and queued > 0 and not (isinstance(overflows, int) and overflows > 0):
        out.append(
            f"up to {queued} connections waited in the accept queue, handshake done but not yet accepted"
            + (": blocking serves one connection at a time." if row["variant"] == "blocking" else ".")
        )
    syn_sent = row.get("peak_syn_sent")
    if isinstance(syn_sent, int) and syn_sent > 0:
        out.append(
            f"up to {syn_sent} clients sat in SYN_SENT: their SYNs were dropped and are retried on the kernel's "
            "schedule (about 1, 2, 3 s); a connect still waiting when the run ended is in no latency figure."
        )
    cookies = row.get("syncookies_sent")
    if isinstance(cookies, int) and cookies > 0:
        out.append(
            f"{cookies:,} SYN cookies sent: the half-open queue was full too, so connect() returned for clients "
            f"the server held nothing for (connect p99 {row['connect_p99_ms']} ms) while their first reply byte "
            f"waited for the queue to drain (first-reply p99 {row['first_reply_p99_ms']} ms, "
            f"max {row['first_reply_max_ms']} ms)."
        )
    if row["counters_scope"] == "shared" and isinstance(overflows, int):
        out.append(
            "kernel counters are shared with the rest of the machine (no private network namespace): "
            "treat the overflow and retransmit figures as upper bounds."
        )
    tw = row.get("peak_time_wait")
    if isinstance(tw, int) and tw > 0:
        out.append(f"{tw:,} sockets in TIME_WAIT at peak: the side that closes first holds TIME_WAIT for 60 s.")
    est = row.get("peak_established")
    if isinstance(est, int) and est >= 100 and row.get("peak_threads") == row.get("peak_threads"):
        out.append(
            f"{name} held {est:,} connections with {row['peak_threads']:,} thread"
            f"{'s' if row['peak_threads'] != 1 else ''}, "
            f"{row['rss_per_connection_bytes'] / 1024:,.1f} KiB of RSS growth and {row['peak_fds'] / est:.2f} fds "
            "per connection."
        )
    if row["client_bound"] is True:
        out.append(
            f"client-bound: the load generator ran at {row['loadgen_median_cpu_percent']:.0f}% of a core "
            "(median over the window); these throughput figures measure the load generator, not the server."
        )
    cpus = run.info.get("cpus") or 0
    machine = row.get("machine_cpu_percent")
    if (
        cpus
        and isinstance(machine, float)
        and machine >= CLIENT_BOUND_PERCENT * cpus
        and row["client_bound"] is not True
    ):
        out.append(
            f"machine-bound: server and load generator together used {machine:.0f}% of {cpus} cores (median): "
            "they compete for the CPU, so neither figure is the server's alone."
        )
    if row["failures"]:
        out.append(f"{row['failures']:,} failures: {row['failure_classes']}.")
    stopped = run.info.get("server_stopped", {})
    if run.info.get("server") and stopped is None:
        out.append(f"{name} did not stop cleanly (it died during the run, or had to be killed).")
    return out


# -- charts ------------------------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _elapsed(run: RunData, timestamps: pd.Series) -> pd.Series:
    start = (run.info.get("window") or {}).get("start") or float(timestamps.min())
    return timestamps - start


def throughput_chart(run: RunData) -> go.Figure | None:
    hist = run.history
    if hist is None or hist.empty or "Total Request Count" not in hist:
        return None
    per_op = hist[hist["Type"].isin(OPS)]
    if per_op.empty:
        per_op = hist[hist["Name"] == "Aggregated"]
    fig = go.Figure()
    for (kind, name), g in per_op.groupby(["Type", "Name"]):
        g = g.drop_duplicates("Timestamp", keep="last").sort_values("Timestamp")
        rate = g["Total Request Count"].diff() / g["Timestamp"].diff()  # counts, not Locust's smoothed rate
        fig.add_scatter(x=_elapsed(run, g["Timestamp"]), y=rate, mode="lines", name=f"{kind} {name}".strip())
    fig.update_xaxes(title="seconds into the run")
    fig.update_yaxes(title="requests/s", rangemode="tozero")
    return _layout(fig, "Throughput (completed requests per second, from counts)")


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
            name=f"{r['type']} {r['name']}",
        )
    fig.update_yaxes(type="log", title="ms (µs resolution)")
    return _layout(fig, "Latency percentiles (socklab µs histograms)")


def connections_chart(run: RunData) -> go.Figure | None:
    mon = run.monitor
    if mon is None:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("server's ends", "clients' ends"), shared_yaxes=True)
    x = _elapsed(run, mon["timestamp"])
    for col, side in ((1, "server"), (2, "client")):
        for state in REPORTED_STATES:
            y = mon[f"{side}_{state}"]
            if y.any():
                fig.add_scatter(x=x, y=y, stackgroup=side, name=f"{side} {state}", mode="lines", row=1, col=col)
    fig.update_xaxes(title="seconds into the run")
    fig.update_yaxes(title="sockets", col=1)
    return _layout(fig, "TCP connections on the server's port by state (stacked)", 380)


def accept_queue_chart(run: RunData) -> go.Figure | None:
    mon = run.monitor
    if mon is None:
        return None
    x = _elapsed(run, mon["timestamp"])
    fig = go.Figure()
    fig.add_scatter(x=x, y=mon["accept_queue"], mode="lines", name="accept-queue depth")
    fig.add_scatter(x=x, y=mon["backlog"], mode="lines", name="backlog", line={"dash": "dash"})
    fig.add_scatter(x=x, y=mon["backlog"] + 1, mode="lines", name="backlog + 1 (queue full)", line={"dash": "dot"})
    fig.update_xaxes(title="seconds into the run")
    fig.update_yaxes(title="connections", rangemode="tozero")
    return _layout(fig, "Accept queue against the backlog")


def overflow_chart(run: RunData) -> go.Figure | None:
    mon = run.monitor
    if mon is None:
        return None
    x = _elapsed(run, mon["timestamp"])
    fig = go.Figure()
    for col in (
        "TcpExt_ListenOverflows",
        "TcpExt_ListenDrops",
        "TcpExt_TCPReqQFullDrop",
        "TcpExt_TCPReqQFullDoCookies",
        "TcpExt_SyncookiesSent",
        "TcpExt_TCPSynRetrans",
        "Tcp_RetransSegs",
    ):
        fig.add_scatter(x=x, y=mon[col], mode="lines", name=col.split("_", 1)[1])
    scope = str(mon["counters_scope"].iloc[-1])
    fig.update_xaxes(title="seconds into the run")
    fig.update_yaxes(title="events since start", rangemode="tozero")
    return _layout(fig, f"Kernel counters ({scope})")


def cost_chart(run: RunData) -> go.Figure | None:
    mon = run.monitor
    if mon is None:
        return None
    x = _elapsed(run, mon["timestamp"])
    fig = make_subplots(rows=2, cols=2, subplot_titles=("CPU % of one core", "RSS MiB", "threads", "open fds"))
    fig.add_scatter(x=x, y=mon["server_cpu_percent"], name="server CPU %", row=1, col=1)
    fig.add_scatter(x=x, y=mon["loadgen_cpu_percent_max"], name="load generator CPU % (busiest process)", row=1, col=1)
    fig.add_hline(y=CLIENT_BOUND_PERCENT, line_dash="dot", row=1, col=1)
    fig.add_scatter(x=x, y=mon["server_rss_bytes"] / 2**20, name="server RSS", row=1, col=2)
    fig.add_scatter(x=x, y=mon["server_threads"], name="server threads", row=2, col=1)
    fig.add_scatter(x=x, y=mon["server_fds"], name="server fds", row=2, col=2)
    return _layout(fig, "Server cost and load-generator CPU", 560)


def connect_histogram_chart(run: RunData) -> go.Figure | None:
    hist = _merged(run, ("CONNECT",))
    first = _merged(run, ("FIRST_REPLY",))
    if hist is None:
        return None
    fig = go.Figure()
    # Log-spaced bins: a SYN retry at 1 s, 2 s, 3 s stands apart from sub-ms handshakes.
    edges = [10 ** (k / 20) for k in range(-80, 101)]  # 0.0001 ms … 100 s
    for label, h in (("connect()", hist), ("first reply byte", first)):
        if h is None:
            continue
        counts = [0] * (len(edges) - 1)
        for item in h.get_recorded_iterator():
            ms = item.value_iterated_to / 1000
            k = min(max(math.floor(20 * math.log10(max(ms, 1e-4))) + 80, 0), len(counts) - 1)
            counts[k] += item.count_added_in_this_iter_step
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
    return _layout(fig, "Connect time and first-reply time (SYN retries show as clusters at about 1, 2, 3 s)")


# -- pages -------------------------------------------------------------------------------------

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


def _page(title: str, sections: list[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style><script src='plotly.min.js'></script></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return "<div class='chart'>" + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id) + "</div>"


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", float_format=lambda v: f"{v:,.3f}".rstrip("0").rstrip("."), border=0)


def build_run_report(run_dir: Path) -> tuple[Path, Path]:
    """Write summary.csv and report.html into the run folder; returns their paths."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    row = summarize(run)
    summary = pd.DataFrame([row], columns=SUMMARY_COLUMNS)
    summary_path = run_dir / "summary.csv"
    summary.to_csv(summary_path, index=False)
    info = run.info
    v = info.get("versions") or {}
    facts = [
        info.get("variant", ""),
        row["user_class"],
        f"{row['users']} users",
        f"window {row['duration_s']} s",
        f"counters {row['counters_scope']}",
        f"started {info.get('started_at', '')}",
        f"socklab {v.get('socklab', '')}, Locust {v.get('locust', '')}, kernel {v.get('kernel', '')}",
    ]
    about = "<p class='note'>" + " · ".join(html.escape(str(f)) for f in facts) + "</p>"
    sections = [
        about,
        "<h2>Findings</h2><ul class='findings'>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in findings(run, row))
        + "</ul>",
    ]
    charts = [
        ("throughput", throughput_chart(run)),
        ("latency", latency_chart(run)),
        ("connections", connections_chart(run)),
        ("accept-queue", accept_queue_chart(run)),
        ("overflow", overflow_chart(run)),
        ("cost", cost_chart(run)),
        ("connect-time", connect_histogram_chart(run)),
    ]
    sections.append("<h2>Charts</h2>")
    for div_id, fig in charts:
        if fig is not None:
            sections.append(_figure_html(fig, div_id))
    if run.monitor is None:
        sections.append(
            "<p class='note'>No monitor.csv in this run: connection, queue and cost charts are absent "
            "(the monitor runs when socklab started the server).</p>"
        )
    sections.append("<h2>Summary</h2>" + _table(summary.T.reset_index().set_axis(["column", "value"], axis=1)))
    if not run.latency.empty:
        sections.append("<h2>Latency (µs)</h2>" + _table(run.latency))
    ensure_plotlyjs(run_dir)
    report_path = run_dir / "report.html"
    report_path.write_text(_page(f"socklab run {run.run_id}", sections), encoding="utf-8")
    return summary_path, report_path


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
            sections.append(_figure_html(fig, f"s{i}-{k}"))
    sections.append("<h2>All runs</h2>" + _table(summary.drop(columns=["scenario_label"])))
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
    page.write_text(_page("socklab comparison", sections), encoding="utf-8")
    return summary_path, page


def compare_charts(g: pd.DataFrame) -> list[go.Figure]:
    figs = []
    by_variant = list(g.sort_values("users").groupby("variant", sort=False))
    fig = go.Figure()
    for variant, v in by_variant:
        fig.add_scatter(x=v["users"], y=v["rps"], mode="lines+markers", name=str(variant))
    fig.update_xaxes(title="users", type="log" if g["users"].nunique() > 2 else "linear")
    fig.update_yaxes(title="requests/s", rangemode="tozero")
    figs.append(_layout(fig, "Throughput against users"))
    fig = go.Figure()
    for variant, v in by_variant:
        for col, dash in (("latency_p50_ms", "solid"), ("latency_p99_ms", "dash")):
            fig.add_scatter(
                x=v["users"], y=v[col], mode="lines+markers", line={"dash": dash}, name=f"{variant} {col.split('_')[1]}"
            )
    fig.update_xaxes(title="users")
    fig.update_yaxes(title="ms", type="log")
    figs.append(_layout(fig, "Latency p50 and p99 against users"))
    last = g.sort_values("users").groupby("variant", sort=False).tail(1)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("SYNs dropped (ListenOverflows)", "server CPU µs per request", "client-side TIME_WAIT (peak)"),
    )
    fig.add_bar(x=last["variant"], y=last["listen_overflows"], name="overflows", row=1, col=1)
    fig.add_bar(x=last["variant"], y=last["server_cpu_us_per_request"], name="CPU µs/request", row=1, col=2)
    fig.add_bar(x=last["variant"], y=last["peak_time_wait"], name="TIME_WAIT", row=1, col=3)
    figs.append(_layout(fig, "At the highest load: overflows, CPU per request, TIME_WAIT", 360))
    est = last["peak_established"].where(last["peak_established"] > 0)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("RSS growth KiB per connection", "threads per connection", "peak connections (server side)"),
    )
    fig.add_bar(x=last["variant"], y=last["rss_per_connection_bytes"] / 1024, name="RSS/conn", row=1, col=1)
    fig.add_bar(x=last["variant"], y=last["peak_threads"] / est, name="threads/conn", row=1, col=2)
    fig.add_bar(x=last["variant"], y=last["peak_established"], name="ESTABLISHED", row=1, col=3)
    figs.append(_layout(fig, "Memory, threads and connections at the highest load", 360))
    return figs


def compare_findings(summary: pd.DataFrame) -> list[str]:
    out = []
    for scenario, g in summary.groupby(summary["scenario"].where(summary["scenario"] != "", summary["op"]), sort=False):
        top = g.loc[g["rps"].idxmax()] if g["rps"].notna().any() else None
        if top is not None:
            out.append(
                f"{scenario}: highest throughput {top['variant']} with {top['rps']:,} req/s at {top['users']} users."
            )
        for variant, v in g.groupby("variant", sort=False):
            v = v.dropna(subset=["rps"]).sort_values("users")
            if len(v) >= 2 and v["rps"].iloc[0] > 0:
                lo, hi = v.iloc[0], v.iloc[-1]
                ratio = hi["rps"] / lo["rps"]
                trend = f"scales ×{ratio:.1f}" if ratio >= 1.3 else "stays flat"
                out.append(
                    f"{scenario}, {variant}: {trend} from {lo['users']} to {hi['users']} users "
                    f"({lo['rps']:,.0f} → {hi['rps']:,.0f} req/s)."
                )
        for _, r in g.iterrows():
            if r["client_bound"] is True:
                out.append(
                    f"{scenario}, {r['variant']} at {r['users']} users: client-bound "
                    f"({r['loadgen_median_cpu_percent']:.0f}% of a core): the figure measures the load generator."
                )
            if isinstance(r["listen_overflows"], int | float) and r["listen_overflows"] > 0:
                out.append(
                    f"{scenario}, {r['variant']} at {r['users']} users: {int(r['listen_overflows']):,} SYNs "
                    f"dropped at backlog {r['backlog']}; connect p99 {r['connect_p99_ms']} ms; up to "
                    f"{r['peak_syn_sent']} clients waiting in SYN_SENT on the retry schedule."
                )
    return out
