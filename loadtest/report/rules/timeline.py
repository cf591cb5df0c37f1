"""Where each connection's time went: the client's records joined to the server's, on the 4-tuple.

The client (``connections_client.csv``) knows when connect() started and returned, its SYN
retransmissions, when its first request left and its reply's first and last bytes came back; the
server (``server_connections.bin``, ``servers.connlog``) knows when ``accept()`` returned, when a
worker began on the connection, when the first request was whole and its reply written, when the
client's FIN came and when it closed.  Both read CLOCK_MONOTONIC, so on one machine (one boot,
whatever the network namespaces) they set side by side, and a connection's first request splits
into consecutive stages (``loadtest.report.rules.stages``).

Ports are reused, so a server record is matched to the latest connection from that client address
and port to the server's port that started before the server accepted it.  Nothing is dropped
silently: every client record gets a ``join`` — joined, never connected, not accepted by the server
(still in its accept queue, or held nowhere after a SYN cookie, when the run ended), past the server
log's cap, no server log, or on another machine (its clock is not the server's: the stages that need
both clocks are not measured, the others stand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtest.report.rules.kernel_times import attach_kernel, kernel_rows
from loadtest.report.rules.server_log import ServerLog, read_server_log
from loadtest.report.rules.stages import with_stages
from servers.connlog import TIMES

CONNECTIONS_FILE = "connections.csv"


def join(client: pd.DataFrame, log: ServerLog | None, server_port: int, boots: dict[str, str]) -> pd.DataFrame:
    """One row per client connection: its own times, the server's when joined, the stages (ms), the join."""
    out = client.copy()
    for name in (*TIMES, "in_window_service"):
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
            left = pd.DataFrame(
                {
                    "ip": server["peer_ip"].astype(str),
                    "port": server["peer_port"].astype(np.int64),
                    "at": server["accepted"],
                    "record": np.arange(len(server)),
                }
            ).sort_values("at")
            right = pd.DataFrame(
                {
                    "ip": mine["local_ip"].astype(str),
                    "port": mine["local_port"].astype(np.int64),
                    "at": mine["connect_start"],
                    "row": mine.index,
                }
            ).sort_values("at")
            # Each server record: the latest connection from that address and port started before it was accepted.
            matched = pd.merge_asof(left, right, on="at", by=["ip", "port"], direction="backward")
            matched = matched.dropna(subset=["row"]).drop_duplicates("row", keep="first")
            rows, records = matched["row"].astype(int).to_numpy(), matched["record"].to_numpy()
            for name in (*TIMES, "in_window_service"):
                out.loc[rows, f"server_{name}"] = server[name].to_numpy()[records]
            out.loc[rows, "worker"] = server["worker"].to_numpy()[records]
            out.loc[rows, "flags"] = server["flags"].to_numpy()[records]
            out.loc[rows, "join"] = "joined"
        missing = (out["join"] == "never connected") & connected & same_clock
        out.loc[missing, "join"] = (
            "past the server log's cap, or not accepted by the server"
            if log.unrecorded
            else "not accepted by the server (in its accept queue, or after a SYN cookie "
            "held nowhere, when the run ended)"
        )
    return out


def join_run(run_dir: Path, info: dict[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """The joined connections of a run folder (``in_window`` marks the measured window's), and a note
    saying why stages are missing when some are ("" when all are measured)."""
    path = run_dir / "connections_client.csv"
    if not path.exists():
        return None, "no connection records (a run from before the timeline, or none ended)"
    client = pd.read_csv(path, dtype={"worker": str, "user_id": str, "local_ip": str, "outcome": str})
    if client.empty:
        return None, "no connection records"
    client = attach_kernel(client.rename(columns={"worker": "worker_id"}), run_dir)
    server = info.get("server") or {}
    log, why = read_server_log(run_dir / "server_connections.bin")
    if log is None and server.get("command"):
        why = "no server log: the server is a --server-cmd of yours, which keeps none; its own stages not measured"
    boots = {str(p.get("worker_id", "local")): str(p.get("boot_id", "")) for p in info.get("load_processes") or []}
    joined = join(client, log, int(server.get("port") or 0), boots)
    window = info.get("window") or {}
    start, stop = window.get("monotonic_start"), window.get("monotonic_stop")
    if start and stop:
        joined = with_stages(joined, float(start), float(stop))
        # Open at some time in the window: a persistent user's connection, made in the warm-up, counts too.
        closed = joined["closed"].fillna(0)
        joined["in_window"] = (joined["connect_start"] <= stop) & ((closed <= 0) | (closed >= start))
    else:
        joined = with_stages(joined)
        joined["in_window"] = True
    joined["stages_from"] = np.where(kernel_rows(joined), "kernel", "stamps")
    if log is not None and not log.complete:
        why = why or "the server log is incomplete (the server was killed, or records were still open)"
    if log is not None and (joined["join"] == "another machine: its clock is not the server's").any():
        why = why or "some load processes ran on another machine: their cross-clock stages are not measured"
    return joined, why
