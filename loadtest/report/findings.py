"""Findings: plain sentences read off the data, for one run and across runs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.report.load import RunData, traits_of
from loadtest.report.summary import load_bound


def findings(run: RunData, row: dict[str, Any]) -> list[str]:
    """Plain sentences read off the data."""
    out = []
    name = row["variant"] or "server"
    traits = traits_of(run)
    one_at_a_time = bool(traits.get("serves_one_at_a_time"))
    if row["requests"]:
        out.append(
            f"{name}: {row['requests']:,} {row['op'] or 'requests'} in {row['duration_s']:g} s = {row['rps']:,} req/s "
            f"with {row['users']} users; latency p50 {row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms."
        )
    if row["op"] == "SLEEP" and one_at_a_time and row["rps"] == row["rps"]:
        sleep_ms = (run.info.get("options") or {}).get("sleep_ms") or 0
        if sleep_ms:
            out.append(
                f"{name} serves one client at a time: {row['rps']} req/s against 1 / {sleep_ms} ms = "
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
            + (f": {name} serves one connection at a time." if one_at_a_time else ".")
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
    bound = load_bound(row, run.info.get("cpus"))
    if bound == "client-bound":
        out.append(
            f"client-bound: the load generator ran at {row['loadgen_median_cpu_percent']:.0f}% of a core "
            "(median over the window); these throughput figures measure the load generator, not the server."
        )
    elif bound == "machine-bound":
        out.append(
            f"machine-bound: server and load generator together used {row['machine_cpu_percent']:.0f}% of "
            f"{run.info.get('cpus')} cores (median): they compete for the CPU, so neither figure is the server's alone."
        )
    if row["failures"]:
        out.append(f"{row['failures']:,} failures: {row['failure_classes']}.")
    stopped = run.info.get("server_stopped", {})
    if run.info.get("server") and stopped is None:
        out.append(f"{name} did not stop cleanly (it died during the run, or had to be killed).")
    return out


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
