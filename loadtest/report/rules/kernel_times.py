"""The kernel's account of each connection (``kernel_connections.csv``, from ``loadtest.measure.tracer``)
set beside the clients' records, and what it changes in the stages.

A client record is matched to the kernel's connection from the same address and port whose SYN_SENT came
first at or after the client's connect() start (ports are reused: never by port alone).  Where a record
has the kernel's times, the stages up to ``accept()`` are the kernel's: the handshake ends when the
client's socket is ESTABLISHED, half-open runs from there to the server's child becoming ESTABLISHED (the
final ACK got in), the accept queue from there to ``accept()`` returning it.  Where it has none (no
tracer, another host, an event lost), they stay the clients' and the server's own stamps, and the row
says so (``stages_from``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtest.declare.kernel import KERNEL_FILE, KERNEL_FILE_NAMES, KERNEL_NAMES, KERNEL_RAW
from loadtest.measure.kernel_pairs import read_records, to_connections

ANY_ADDRESS = "*"  # IPv6 connections: the tracer keeps no address, so they are matched on the port
HALF_OPEN_MS = 1.0  # longer than the final ACK's flight on loopback (µs): it was dropped
TEXT = ("kernel_ip", "kernel_first_fin", "kernel_synack_at")
MATCH_WITHIN_S = 1.0  # a client stamps connect() start just before the call: its SYN follows within µs


def attach_kernel(client: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """The client's records with the kernel's columns (NaN where the kernel has no record of it)."""
    out = client.copy()
    kernel = kernel_connections(run_dir)
    for name in KERNEL_NAMES:
        out[name] = "" if name in TEXT else np.nan
    out["kernel_complete"] = False
    if kernel is None or kernel.empty or out.empty:
        return out
    left = pd.DataFrame(
        {
            "ip": out["local_ip"].astype(str).map(lambda ip: ANY_ADDRESS if ":" in ip else ip),
            "port": pd.to_numeric(out["local_port"], errors="coerce").fillna(-1).astype(np.int64),
            "at": out["connect_start"].astype(float),
            "row": out.index,
        }
    ).sort_values("at")
    right = pd.DataFrame(
        {
            "ip": kernel["kernel_ip"].fillna("").map(lambda ip: ip or ANY_ADDRESS),
            "port": kernel["kernel_port"].astype(np.int64),
            "at": kernel["kernel_syn_sent"].astype(float),
            "record": np.arange(len(kernel)),
        }
    ).sort_values("at")
    matched = pd.merge_asof(left, right, on="at", by=["ip", "port"], direction="forward", tolerance=MATCH_WITHIN_S)
    matched = matched.dropna(subset=["record"]).drop_duplicates("record", keep="first")
    rows, records = matched["row"].to_numpy(), matched["record"].astype(int).to_numpy()
    for name in KERNEL_FILE_NAMES:
        if name in kernel:  # a trace written before a column existed lacks it
            out.loc[rows, name] = kernel[name].to_numpy()[records]
    split_synacks(out, counters_read_at(run_dir))
    return out


def kernel_connections(run_dir: Path) -> pd.DataFrame | None:
    """``kernel_connections.csv``, made first from the tracer's records if this is the run's first report (its
    records are then the newest: a folder used again keeps no earlier run's pairs)."""
    path, raw = run_dir / KERNEL_FILE, run_dir / KERNEL_RAW
    if raw.exists():
        trace = json.loads((run_dir / "run.json").read_text()).get("kernel_trace") or {}
        # Whole only when the tracer said it lost nothing: one that could not say is not whole.
        whole = trace.get("status") == "measured" and not trace.get("lost_events")
        frame = to_connections(read_records(raw), int(trace.get("port") or 0), whole=whole)
        frame.to_csv(path, index=False)
        raw.unlink()
    if not path.exists():
        return None
    return pd.read_csv(path, dtype=dict.fromkeys(TEXT, str), keep_default_na=False, na_values=[""])


def counters_read_at(run_dir: Path) -> float | None:
    """CLOCK_MONOTONIC of the monitor's last read of the kernel counters (None: no monitor, or an old one)."""
    path = run_dir / "monitor.csv"
    if not path.exists():
        return None
    times = pd.read_csv(path, usecols=lambda c: c == "counters_read_at").squeeze("columns")
    last = float(times.iloc[-1]) if isinstance(times, pd.Series) and len(times) else math.nan
    return None if math.isnan(last) else last  # a monitor from before the column: no cut


def split_synacks(out: pd.DataFrame, cutoff: float | None) -> None:
    """Each connection's SYN-ACK re-sends up to the counters' last read (``kernel_synack_retrans``: the span
    ``server_synack_retrans`` covers) and after it (``kernel_synack_retrans_after``)."""
    traced = out["kernel_syn_sent"].notna()
    total = out["kernel_synack_retrans"].astype(float)
    times = out["kernel_synack_at"].fillna("").astype(str)
    after = times.map(lambda text: sum(cutoff is not None and float(t) > cutoff for t in text.split()))
    out["kernel_synack_retrans"] = (total - after).where(traced)
    out["kernel_synack_retrans_after"] = after.astype(float).where(traced)


def synacks_in_counters_span(frame: pd.DataFrame | None, info: dict[str, Any]) -> float:
    """The kernel's per-connection SYN-ACK re-sends added up over the counters' span (NaN: no whole trace)."""
    trace = info.get("kernel_trace") or {}
    if frame is None or trace.get("status") != "measured" or int(trace.get("lost_events") or 0):
        return float("nan")
    return float(frame["kernel_synack_retrans"].sum())


def kernel_peak_accept_queue(frame: pd.DataFrame | None, info: dict[str, Any]) -> float:
    """The deepest the accept queue was, from the kernel's stamps: a connection joins it at the server child's
    ESTABLISHED and leaves as accept() returns it (NaN: no whole trace).  Exact where the monitor samples; one
    over the kernel's own count at most, while an accept() that has taken one is returning."""
    trace = info.get("kernel_trace") or {}
    if frame is None or trace.get("status") != "measured" or int(trace.get("lost_events") or 0):
        return float("nan")
    if "kernel_server_established" not in frame:
        return float("nan")
    ins, outs = frame["kernel_server_established"].dropna(), frame["kernel_accepted"].dropna()
    steps = pd.concat([pd.Series(1, index=ins.to_numpy()), pd.Series(-1, index=outs.to_numpy())])
    if steps.empty:
        return 0.0
    return float(max(steps.groupby(level=0).sum().sort_index().cumsum().max(), 0))


def kernel_half_open_until(out: pd.DataFrame, ev: pd.DataFrame, close: float) -> pd.Series:
    """The server's child ESTABLISHED (the final ACK got in), between the client's and accept(); NaN when
    it had not by the window's close (or the client's own close): half-open then."""
    closed = out["closed"].astype(float)
    until = np.fmin(closed.where(closed > 0), close)
    child = out.get("kernel_server_established", pd.Series(np.nan, index=out.index)).astype(float)
    child = child.where(child <= until.fillna(close))  # NaN stays NaN: still half-open …
    child = child.fillna(ev["e3"])  # … unless accepted by then (its record lost): established before that
    return child.clip(lower=ev["e2"]).clip(upper=ev["e3"].fillna(np.inf)).where(ev["e2"].notna())


def kernel_rows(out: pd.DataFrame) -> pd.Series:
    """The records whose stages up to accept() are the kernel's: matched, and the account whole."""
    if "kernel_syn_sent" not in out:
        return pd.Series(False, index=out.index)
    return out["kernel_syn_sent"].notna() & out["kernel_complete"].astype(bool)


def kernel_summary(info: dict[str, Any], frame: pd.DataFrame | None) -> str:
    """Where the stages up to accept() came from, in one line: the kernel's (for how many connections, and
    the events the tracer lost), or why not."""
    trace = info.get("kernel_trace") or {}
    status = str(trace.get("status") or "unavailable: a run from before the kernel tracer")
    if not status.startswith("measured"):
        return f"{status}; stages up to accept() from the clients' and the server's own stamps"
    lost = int(trace.get("lost_events") or 0)
    events = f"{int(trace.get('events') or 0):,} events, {lost:,} lost"
    if frame is None or frame.empty:
        return f"measured ({events}); no connection records to set them beside"
    connected = frame[(frame["connected"] == 1) & frame["in_window"]]  # the window's, as connections_recorded
    traced = int(kernel_rows(connected).sum())
    words = (
        f"measured: stages up to accept() from the kernel for {traced:,} of the window's {len(connected):,} "
        "connected connections (a retried connect's split between SYN retries and its last round trip is "
        "TCP_INFO's round trip)"
    )
    if traced < len(connected):
        why = "an event lost" if lost else "another host's, or begun before the tracer"
        words += f" (the rest, {why}: from the stamps, stages_from = stamps)"
    return f"{words}; {events}"
