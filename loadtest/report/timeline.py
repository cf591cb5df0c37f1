"""Where each connection's time went: the client's records joined to the server's, on the 4-tuple.

The client (``connections_client.csv``) knows when connect() started and returned, its SYN
retransmissions, when its first request left and its reply's first and last bytes came back; the
server (``server_connections.bin``, ``servers.connlog``) knows when ``accept()`` returned, when a
worker began on the connection, when the first request was whole and its reply written, when the
client's FIN came and when it closed.  Both read CLOCK_MONOTONIC, so on one machine (one boot,
whatever the network namespaces) they set side by side, and a connection's first request splits
into stages (the metric definitions of the design notes):

- handshake: connect start → return, of which the SYN-retry waits (all but the last round trip,
  TCP_INFO's round trip at connect) and the last round trip;
- accept-queue wait: connect() return → ``accept()`` return;
- pool-queue wait: ``accept()`` return → a worker starts on it;
- request wait: the worker starts → the first request is whole (the client's send, or its pause);
- service: the request whole → its reply written;
- transfer: the reply written → its last byte at the client;
- teardown: who sent FIN first (that side holds TIME_WAIT).

Ports are reused, so a server record is matched to the latest connection from that client address
and port to the server's port that started before the server accepted it.  Nothing is dropped
silently: every client record gets a ``join`` — joined, never connected, not accepted by the server
(still in its accept queue, or held nowhere after a SYN cookie, when the run ended), past the server
log's cap, no server log, or on another machine (its clock is not the server's: the stages that need
both clocks are not measured, the others stand).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servers.connlog import ENDED_BADLY, HEADER, HEADER_SIZE, IPV6, MAGIC, RECORD, REJECTED, SERVER_CLOSED, TIMES

STAGES = ("syn_retry_wait", "last_round_trip", "accept_queue", "pool_queue", "request_wait", "service", "transfer")
STAGE_LABELS = {
    "syn_retry_wait": "SYN retries", "last_round_trip": "handshake round trip", "accept_queue": "accept queue",
    "pool_queue": "pool queue", "request_wait": "request arriving", "service": "service", "transfer": "reply transfer",
}  # fmt: skip
CONNECTIONS_FILE = "connections.csv"


@dataclass
class ServerLog:
    records: pd.DataFrame
    cap: int
    recorded: int
    unrecorded: int
    boot_id: str
    complete: bool  # False: the file was cut short, or records were still open (the server was killed)


RECORD_DTYPE = np.dtype([*((t, "<f8") for t in TIMES), ("peer_port", "<u2"), ("local_port", "<u2"),
                         ("requests", "<u4"), ("worker_flags", "<u4"), ("peer", "V16"), ("pad", "V4")])  # fmt: skip


def read_server_log(path: Path) -> tuple[ServerLog | None, str]:
    """The server's connection records, or None and why not, in words (never a crash)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, "no server log (a server socklab did not start, or --conn-log-cap 0)"
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        return None, "the server log is not a socklab connection log of this version"
    _magic, _version, cap, tail, _stride, _taken, recorded, unrecorded, boot = HEADER.unpack_from(data)
    need = HEADER_SIZE + (cap + tail) * RECORD.size
    if len(data) < need:
        return None, f"the server log is cut short ({len(data):,} of {need:,} bytes)"
    records = np.frombuffer(data, dtype=RECORD_DTYPE, count=cap + tail, offset=HEADER_SIZE)
    records = records[records["closed"] > 0]
    frame = pd.DataFrame({t: records[t] for t in TIMES})
    for name in ("peer_port", "local_port", "requests"):
        frame[name] = records[name].astype(np.int64)
    frame["worker"] = (records["worker_flags"] >> 8).astype(np.int64)
    frame["flags"] = (records["worker_flags"] & 0xFF).astype(np.int64)
    frame["peer_ip"] = [
        socket.inet_ntop(socket.AF_INET6, bytes(p)) if f & IPV6 else socket.inet_ntop(socket.AF_INET, bytes(p)[:4])
        for p, f in zip(records["peer"], frame["flags"], strict=True)
    ]
    # The header's counts are written as the records are (several processes) or at the stop (one): fewer
    # records than it says, or a header with none said though records are there, is a server that was killed.
    complete = int(recorded) == len(frame)
    return ServerLog(frame, cap, max(int(recorded), len(frame)), int(unrecorded), boot.hex(), complete), ""


def teardown_of(row: Any) -> str:
    flags = int(row.flags)
    if flags & REJECTED:
        return "rejected (over --max-connections)"
    if flags & ENDED_BADLY:
        return "ended badly (reset, timeout or bad frame)"
    if flags & SERVER_CLOSED:
        return "server closed first: the server holds TIME_WAIT"
    return "client closed first: the client holds TIME_WAIT"


def join(client: pd.DataFrame, log: ServerLog | None, server_port: int, boots: dict[str, str]) -> pd.DataFrame:
    """One row per client connection: its own times, the server's when joined, the stages (ms), the join."""
    out = client.copy()
    for name in TIMES:
        out[f"server_{name}"] = np.nan
    out["worker"], out["flags"] = np.nan, np.nan
    out["join"] = "never connected"
    connected = out["connected"] == 1
    if log is None:
        out.loc[connected, "join"] = "no server log"
    else:
        same_clock = out["worker_id"].map(lambda w: boots.get(str(w), "") == log.boot_id)
        out.loc[connected & ~same_clock, "join"] = "another machine: its clock is not the server's"
        mine = out[connected & same_clock]
        server = log.records[log.records["local_port"] == server_port].reset_index(drop=True)
        if len(mine) and len(server):
            left = pd.DataFrame({"ip": server["peer_ip"].astype(str), "port": server["peer_port"].astype(np.int64),
                                 "at": server["accepted"], "record": np.arange(len(server))}).sort_values("at")
            right = pd.DataFrame({"ip": mine["local_ip"].astype(str), "port": mine["local_port"].astype(np.int64),
                                  "at": mine["connect_start"], "row": mine.index}).sort_values("at")
            # Each server record: the latest connection from that address and port started before it was accepted.
            matched = pd.merge_asof(left, right, on="at", by=["ip", "port"], direction="backward")
            matched = matched.dropna(subset=["row"]).drop_duplicates("row", keep="first")
            rows, records = matched["row"].astype(int).to_numpy(), matched["record"].to_numpy()
            for name in TIMES:
                out.loc[rows, f"server_{name}"] = server[name].to_numpy()[records]
            out.loc[rows, "worker"] = server["worker"].to_numpy()[records]
            out.loc[rows, "flags"] = server["flags"].to_numpy()[records]
            out.loc[rows, "join"] = "joined"
        missing = (out["join"] == "never connected") & connected & same_clock
        out.loc[missing, "join"] = ("past the server log's cap, or not accepted by the server" if log.unrecorded
                                    else "not accepted by the server (in its accept queue, or after a SYN cookie "
                                    "held nowhere, when the run ended)")  # fmt: skip
    return with_stages(out)


def with_stages(out: pd.DataFrame) -> pd.DataFrame:
    ms = 1000.0

    def times(column: str) -> pd.Series:
        return out[column].where(out[column] > 0)  # 0: did not happen (client and server records alike)

    handshake = (times("connect_end") - out["connect_start"]) * ms
    rtt = (out["rtt_us"] / 1000.0).clip(upper=handshake)
    out["handshake"] = handshake
    out["syn_retry_wait"] = (handshake - rtt).where(out["syn_retrans"] > 0, 0.0).where(handshake.notna())
    out["last_round_trip"] = handshake - out["syn_retry_wait"]
    # accept() returns after connect() does (the third step of the handshake follows the second), so a
    # negative wait is the client reading its clock late — its greenlet resumed after the server accepted
    # — and reads 0; so does a reply "carried back" before the server's clock read after its send().
    out["accept_queue"] = ((times("server_accepted") - times("connect_end")) * ms).clip(lower=0)
    # Still waiting when the run ended: a lower bound of the wait, up to the client's close.
    queued = out["join"].str.startswith("not accepted")
    out["accept_queue_lower_bound"] = queued
    out.loc[queued, "accept_queue"] = ((times("closed") - times("connect_end")) * ms)[queued]
    out["pool_queue"] = (times("server_service_start") - times("server_accepted")) * ms
    out["request_wait"] = (times("server_first_read") - times("server_service_start")) * ms
    out["service"] = (times("server_first_written") - times("server_first_read")) * ms
    out["transfer"] = ((times("last_byte") - times("server_first_written")) * ms).clip(lower=0)
    out["first_reply"] = (times("first_byte") - out["connect_start"]) * ms
    out["first_request"] = (times("last_byte") - out["connect_start"]) * ms
    joined = out["join"] == "joined"
    out["teardown"] = ""
    if joined.any():
        out.loc[joined, "teardown"] = [teardown_of(r) for r in out[joined].itertuples()]
    return out


SHARES = ("handshake", "accept_queue", "pool_queue", "request_wait", "service", "transfer")


def join_run(run_dir: Path, info: dict[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """The joined connections of a run folder (``in_window`` marks the measured window's), and a note
    saying why stages are missing when some are ("" when all are measured)."""
    path = run_dir / "connections_client.csv"
    if not path.exists():
        return None, "no connection records (a run from before the timeline, or none ended)"
    client = pd.read_csv(path, dtype={"worker": str, "user_id": str, "local_ip": str, "outcome": str})
    if client.empty:
        return None, "no connection records"
    client = client.rename(columns={"worker": "worker_id"})
    server = info.get("server") or {}
    log, why = read_server_log(run_dir / "server_connections.bin")
    if log is None and server.get("command"):
        why = "no server log: the server is a --server-cmd of yours, which keeps none; client-side stages only"
    boots = {str(p.get("worker_id", "local")): str(p.get("boot_id", "")) for p in info.get("load_processes") or []}
    joined = join(client, log, int(server.get("port") or 0), boots)
    window = info.get("window") or {}
    start, stop = window.get("monotonic_start"), window.get("monotonic_stop")
    if start and stop:
        # Open at some time in the window: a persistent user's connection, made in the warm-up, counts too.
        closed = joined["closed"].fillna(0)
        joined["in_window"] = (joined["connect_start"] <= stop) & ((closed <= 0) | (closed >= start))
    else:
        joined["in_window"] = True
    if log is not None and not log.complete:
        why = why or "the server log is incomplete (the server was killed, or records were still open)"
    if log is not None and (joined["join"] == "another machine: its clock is not the server's").any():
        why = why or "some load processes ran on another machine: their cross-clock stages are not measured"
    return joined, why


def figures(frame: pd.DataFrame | None, note: str) -> dict[str, Any]:
    """The summary's timeline columns, over the measured window's connections."""
    nan = float("nan")
    out: dict[str, Any] = {"connections_recorded": nan, "connections_joined": nan, "connections_never_accepted": nan,
                           "timeline": note or "measured"}  # fmt: skip
    if frame is None:
        return out
    mine = frame[frame["in_window"]]
    joined = mine[mine["join"] == "joined"]
    out["connections_recorded"], out["connections_joined"] = len(mine), len(joined)
    out["connections_never_accepted"] = int(mine["accept_queue_lower_bound"].sum())
    lower: list[str] = []

    def pct(series: pd.Series, p: float, name: str, censored: pd.Series | None = None) -> float:
        values = series.dropna()
        if values.empty:
            return nan
        value = round(float(np.percentile(values, p)), 3)
        if censored is not None and (censored & (series <= value)).any():
            lower.append(name)  # a wait still running when the run ended, not above it yet: it may still pass it
        return value

    waits = mine["accept_queue"].where(mine["join"].isin(["joined"]) | mine["accept_queue_lower_bound"])
    for p in (50, 99):
        name = f"accept_queue_wait_p{p}_ms"
        out[name] = pct(waits, p, name, mine["accept_queue_lower_bound"])
        out[f"pool_queue_wait_p{p}_ms"] = pct(joined["pool_queue"], p, "")
        out[f"server_service_p{p}_ms"] = pct(joined["service"], p, "")
    whole = joined.dropna(subset=["first_request"])  # connections whose first reply came back
    total = whole["first_request"].sum()
    for stage in SHARES:
        out[f"first_request_share_{stage}"] = round(float(whole[stage].sum() / total), 4) if total > 0 else nan
    out["timeline_lower_bounds"] = ";".join(lower)
    return out
