"""The kernel tracer's records (``loadtest/measure/bpf/tracer.h``) paired into connections.

Each record is one event of one socket: a TCP state change, an ``accept()`` returning it, or a SYN-ACK
the listener re-sent for a request socket.  A socket's address is reused as soon as it is freed, so
nothing is paired by address alone; everything goes in time order:

- a client socket's life starts at its SYN_SENT (its port is chosen just after: the life's port is the
  one its later records carry);
- a server child's life starts at its creation (LISTEN → SYN_RECV, at the final ACK); it belongs to the
  latest client life from the same address and port born before it;
- an ``accept()`` belongs to the latest child life of that socket created before it;
- a SYN-ACK re-send belongs to the latest client life from that address and port born before it.

Records of sockets whose life began before the tracer attached have no life: they are left out.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadtest.declare.kernel import KERNEL_FILE_NAMES

RECORD = np.dtype(
    [
        ("ts", "<u8"),
        ("sk", "<u8"),
        ("extra", "<u8"),
        ("laddr", "<u4"),
        ("raddr", "<u4"),
        ("lport", "<u2"),
        ("rport", "<u2"),
        ("kind", "u1"),
        ("old", "u1"),
        ("new", "u1"),
        ("pad", "u1"),
    ]
)
STATE, ACCEPT, SYNACK = 0, 1, 2  # the record kinds
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN = 1, 2, 3, 4, 5, 7, 8, 9, 10
SYNACK_TIMES = 63  # the first 63 SYN-ACK re-sends of a connection are listed with their times


def read_records(path: Path) -> pd.DataFrame:
    """The tracer's file → one row per record, times in s."""
    data = np.fromfile(path, dtype=RECORD) if path.exists() else np.zeros(0, dtype=RECORD)
    frame = pd.DataFrame({name: data[name] for name in RECORD.names if name != "pad"})
    frame["t"] = frame["ts"] / 1e9
    frame["code"] = frame["old"].astype(int) * 16 + frame["new"].astype(int)
    return frame


def lives(frame: pd.DataFrame, starts: pd.Series) -> pd.Series:
    """Each record's life of its socket: 1, 2, … from each start in time order (0: before the first)."""
    ordered = frame.assign(start=starts.astype(int)).sort_values(["sk", "t"])
    return ordered.groupby("sk")["start"].cumsum().reindex(frame.index)


def side(frame: pd.DataFrame, starts: pd.Series, addr: str, port: str) -> pd.DataFrame:
    """One row per socket life: its start, its client's address and port, the first time of each state code."""
    frame = frame.assign(life=lives(frame, starts))
    frame = frame[frame["life"] > 0]
    first = frame.sort_values("t").groupby(["sk", "life"])
    out = pd.DataFrame({"born": first["t"].min(), "addr": first[addr].max(), "port": first[port].max()})
    codes = frame.pivot_table(index=["sk", "life"], columns="code", values="t", aggfunc="min")
    return out.join(codes).reset_index()


def to_connections(records: pd.DataFrame, port: int, whole: bool) -> pd.DataFrame:
    """One row per client connection the tracer saw from its start (``KERNEL_FILE_NAMES``)."""
    state = records[records["kind"] == STATE]
    clients = side(state[state["rport"] == port], state["new"] == SYN_SENT, "laddr", "lport")
    child_records = state[(state["lport"] == port) & (state["rport"] != 0)]
    children = side(
        child_records, (child_records["old"] == LISTEN) & (child_records["new"] == SYN_RECV), "raddr", "rport"
    )
    if clients.empty:
        return pd.DataFrame(columns=list(KERNEL_FILE_NAMES))
    clients = clients.sort_values("born").reset_index(drop=True)
    clients["row"] = clients.index
    children = with_accepts(children, records[records["kind"] == ACCEPT])
    paired = latest_before(children, clients, "born")
    synacks = latest_before(
        records[records["kind"] == SYNACK].rename(columns={"raddr": "addr", "rport": "port"}), clients, "t"
    )
    return build(clients, paired, synacks, whole)


def with_accepts(children: pd.DataFrame, accepts: pd.DataFrame) -> pd.DataFrame:
    """Each child life's accept() time and accepting process: the first accept of that socket after the life began."""
    children = children.sort_values("born")
    if children.empty or accepts.empty:
        return children.assign(accepted=np.nan, accepted_by=np.nan)
    found = pd.merge_asof(
        accepts[["t", "sk", "extra"]].sort_values("t"),
        children[["born", "sk", "life"]],
        left_on="t",
        right_on="born",
        by="sk",
    )
    first = found.dropna(subset=["life"]).sort_values("t").groupby(["sk", "life"]).first()
    first = first[["t", "extra"]].rename(columns={"t": "accepted", "extra": "accepted_by"})
    return children.join(first, on=["sk", "life"])


def latest_before(items: pd.DataFrame, clients: pd.DataFrame, at: str) -> pd.DataFrame:
    """Each item with ``row``: the latest client life from its address and port born at or before ``at``."""
    if items.empty:
        return items.assign(row=pd.Series(dtype=float))
    keyed = items.assign(addr=items["addr"].astype(np.int64), port=items["port"].astype(np.int64)).sort_values(at)
    right = clients[["born", "addr", "port", "row"]].astype({"addr": np.int64, "port": np.int64})
    right = right.rename(columns={"born": "client_born"}).sort_values("client_born")
    matched = pd.merge_asof(keyed, right, left_on=at, right_on="client_born", by=["addr", "port"])
    return matched.dropna(subset=["row"]).astype({"row": int})


def build(clients: pd.DataFrame, children: pd.DataFrame, synacks: pd.DataFrame, whole: bool) -> pd.DataFrame:
    """The columns of ``kernel_connections.csv`` from the two sides' lives."""
    child = children.drop_duplicates("row", keep="first").set_index("row")

    def at(frame: pd.DataFrame, old: int, new: int) -> pd.Series:
        code = old * 16 + new
        return frame[code].reindex(clients.index) if code in frame else pd.Series(np.nan, index=clients.index)

    c, s = clients, child.reindex(clients.index)
    closes = {
        name: pd.concat([at(f, old, CLOSE) for old in range(1, 12)], axis=1).min(axis=1)
        for name, f in (("client", c), ("server", s))
    }
    client_fin, server_fin = at(c, ESTABLISHED, FIN_WAIT1), at(s, ESTABLISHED, FIN_WAIT1)
    client_first = client_fin.notna() & ~(server_fin < client_fin)
    server_first = server_fin.notna() & ~client_first

    def closer(a: pd.Series, b: pd.Series) -> pd.Series:
        return a.where(client_first, b.where(server_first))

    def other(a: pd.Series, b: pd.Series) -> pd.Series:
        return b.where(client_first, a.where(server_first))

    resent = synacks.groupby("row")["t"]
    out = pd.DataFrame(
        {
            "kernel_ip": c["addr"].map(ipv4),
            "kernel_port": c["port"].astype(int),
            "kernel_syn_sent": c["born"],
            "kernel_client_established": at(c, SYN_SENT, ESTABLISHED),
            "kernel_connect_failed": at(c, SYN_SENT, CLOSE),
            "kernel_server_established": at(s, SYN_RECV, ESTABLISHED),
            "kernel_accepted": s.get("accepted", np.nan),
            "kernel_accepted_by": s["accepted_by"].astype("Int64") if "accepted_by" in s else pd.NA,
            "kernel_synack_retrans": resent.size().reindex(clients.index).fillna(0).astype(int),
            "kernel_synack_at": _resent_at(resent, clients.index),
            "kernel_first_fin": pd.Series("", index=c.index).mask(client_first, "client").mask(server_first, "server"),
            "kernel_fin_sent": closer(client_fin, server_fin),
            "kernel_fin_arrived": other(at(c, ESTABLISHED, CLOSE_WAIT), at(s, ESTABLISHED, CLOSE_WAIT)),
            "kernel_fin_acked": closer(at(c, FIN_WAIT1, FIN_WAIT2), at(s, FIN_WAIT1, FIN_WAIT2)),
            "kernel_second_fin": other(at(c, CLOSE_WAIT, LAST_ACK), at(s, CLOSE_WAIT, LAST_ACK)),
            # The closer's socket goes to CLOSE as it enters TIME_WAIT, after the other side's FIN; closed by its
            # application in FIN_WAIT2 before that FIN, it is handed to a timewait mini-socket at once: no TIME_WAIT.
            "kernel_time_wait": closer(closes["client"], closes["server"]).where(
                lambda t: t >= other(at(c, CLOSE_WAIT, LAST_ACK), at(s, CLOSE_WAIT, LAST_ACK))
            ),
            "kernel_closed": other(at(c, LAST_ACK, CLOSE), at(s, LAST_ACK, CLOSE)),
            "kernel_client_closed": closes["client"],
            "kernel_server_closed": closes["server"],
        }
    )
    out["kernel_complete"] = (
        True
        if whole
        else out["kernel_client_closed"].notna()
        & (out["kernel_server_closed"].notna() | out["kernel_server_established"].isna())
    )
    return out[list(KERNEL_FILE_NAMES)]


def _resent_at(resent: Any, index: pd.Index) -> pd.Series:
    """When each connection's re-sent SYN-ACKs left (the first 63), space-separated; '' for none."""
    times = resent.agg(lambda t: " ".join(f"{v:.9f}" for v in sorted(t)[:SYNACK_TIMES]))
    return times.reindex(index).astype(object).fillna("")


def ipv4(addr: int) -> str:
    """``skc_daddr`` (network order, read as a little-endian u32) → dotted; '' for 0 (IPv6)."""
    return socket.inet_ntoa(struct.pack("<I", int(addr))) if addr else ""
