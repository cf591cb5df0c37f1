"""The check of the lab's ``nginx-accept``: real nginx's workers, and which of them accepted each connection.

nginx keeps no count of its own that socklab can read, so the accepts per worker come from the kernel:
the tracer stamps each ``accept()`` with the process that made it (``kernel_accepted_by``), whatever the
server.  A worker that accepted nothing is a zero, counted, so four workers always give four figures.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from loadtest.declare.experiments import NGINX_ACCEPT, NGINX_WORKERS
from loadtest.declare.kinds import FIRST_REPLY
from loadtest.report.load import RunData, merged_histogram
from loadtest.report.rules.claims import DIFFERS, FAILS, HOLDS, NOT_HERE, Arms, check, say
from loadtest.report.rules.summary import jain


def accepts_per_worker(run: RunData) -> list[int]:
    """Connections each worker accepted, most first, from the kernel's trace of the whole run (zeros for a
    worker that took none); [] when the kernel was not traced."""
    frame = run.connections
    if frame is None or "kernel_accepted_by" not in frame:
        return []
    counts = sorted(frame["kernel_accepted_by"].dropna().astype(int).value_counts().tolist(), reverse=True)
    return counts + [0] * max(NGINX_WORKERS - len(counts), 0)


def _queue_wait_ms(run: RunData) -> pd.Series:
    """Each connection's wait in its worker's accept queue, from the kernel's own stamps (the child's ESTABLISHED →
    accept() returning it), ms: the server's side of the tail, with none of the load generator's own delays."""
    frame = run.connections
    if frame is None or "kernel_accepted" not in frame:
        return pd.Series(dtype=float)
    return ((frame["kernel_accepted"] - frame["kernel_server_established"]) * 1000).dropna()


def _row(label: str, run: RunData, row: dict[str, Any]) -> dict[str, Any]:
    accepts = accepts_per_worker(run)
    wait = merged_histogram(run, (FIRST_REPLY,))  # connect() start → first reply byte: what a client waits
    timed = wait is not None and wait.get_total_count() > 0

    def ms(value: float) -> float:
        return round(value / 1000, 3)

    queued = _queue_wait_ms(run)
    return {
        "arm": label,
        "accepts per worker": " / ".join(map(str, accepts)) or "not traced",
        "fairness": round(jain(accepts), 3) if sum(accepts) else math.nan,
        "busiest worker's share": round(max(accepts) / sum(accepts), 3) if sum(accepts) else math.nan,
        "first reply avg ms": ms(wait.get_mean_value()) if timed else math.nan,  # type: ignore[union-attr]
        "p99 ms": ms(wait.get_value_at_percentile(99)) if timed else math.nan,  # type: ignore[union-attr]
        "max ms": ms(wait.get_max_value()) if timed else math.nan,  # type: ignore[union-attr]
        "stddev ms": ms(wait.get_stddev()) if timed else math.nan,  # type: ignore[union-attr]
        "accept queue p99 ms": round(float(queued.quantile(0.99)), 3) if len(queued) else math.nan,
        "accept queue max ms": round(float(queued.max()), 3) if len(queued) else math.nan,
        "accept queue stddev ms": round(float(queued.std()), 3) if len(queued) > 1 else math.nan,
        "failures": row["failures"],
    }


# Why the shared listener balances here: nginx re-adds it to its epoll every 16 connections a worker accepts
# (src/event/ngx_event_accept.c), so the next wake-up goes to another worker; Cloudflare measured an older nginx.
REORDERED = (
    "nginx 1.21.6 and later re-add the listener to a worker's epoll after each 16 connections it accepts "
    "(ngx_reorder_accept_events), which passes the next wake-up on"
)
# Why accept_mutex gives one worker everything at a light load: the holder is never busy enough to stop trying
# for it (ngx_accept_disabled), and a worker that missed it waits accept_mutex_delay (500 ms) before its next try.
HOLDER_KEEPS = (
    "the worker that holds the mutex takes it again each turn of its loop while it is not loaded, and the others "
    "retry only every accept_mutex_delay (500 ms)"
)


@check(NGINX_ACCEPT)
def nginx_accept(arms: Arms) -> tuple[pd.DataFrame, list[str], str]:
    rows = [_row(label, run, row) for label, (run, row) in arms.items()]
    by = {r["arm"]: r for r in rows}
    verdicts = [say(NOT_HERE, f"{label}: accepts per worker", UNTRACED) for label, r in by.items() if not _traced(r)]
    # A claim on an arm the kernel did not trace has nothing to stand on: its verdict is the one above.
    off, on, own = (
        by.get(arm) if _traced(by.get(arm)) else None for arm in ("accept_mutex off", "accept_mutex on", "reuseport")
    )
    if off:
        verdicts.append(
            say(
                HOLDS if off["fairness"] < 0.8 else FAILS,
                "a shared listener without accept_mutex: the worker that waited last keeps winning",
                f"Jain's index {off['fairness']}, accepts per worker {off['accepts per worker']}"
                + ("" if off["fairness"] < 0.8 else f"; {REORDERED}"),
            )
        )
    if on:
        turns = on["busiest worker's share"] < 0.5
        verdicts.append(
            say(
                HOLDS if turns else FAILS,
                "accept_mutex on: the workers accept by turn",
                f"Jain's index {on['fairness']}, accepts per worker {on['accepts per worker']}"
                + ("" if turns else f"; {HOLDER_KEEPS}"),
            )
        )
    if own:
        verdicts.append(
            say(
                HOLDS if own["fairness"] >= 0.9 else DIFFERS,
                "reuseport: each worker's own queue, connections spread by hash, evenly",
                f"Jain's index {own['fairness']}, accepts per worker {own['accepts per worker']}",
            )
        )
    if own and off:
        verdicts.append(_tail(off, own))
    names = {"avg": "first reply avg ms", "max": "max ms", "stddev": "stddev ms"}  # the source's latency, as ours
    reported = [
        {"arm": f"{r.who}: {r.setup}", **{names[k]: v for k, v in r.figures.items()}} for r in NGINX_ACCEPT.reported
    ]
    table = pd.DataFrame(rows + reported).rename(columns={"fairness": "Jain's index"})
    rate = NGINX_ACCEPT.options["arrival-rate"]
    note = (
        f"nginx {NGINX_WORKERS} workers, {rate} connect-per-request GETs/s on a schedule; accepts per worker from "
        "the kernel's accept() stamps over the whole run; the wait is connect() start → first reply byte."
    )
    return table, verdicts, note


UNTRACED = "the kernel tracer did not run (accepts per worker come from its accept() stamps): no verdict"


def _traced(row: dict[str, Any] | None) -> bool:
    return row is not None and not math.isnan(row["fairness"]) and not math.isnan(row["accept queue p99 ms"])


def _tail(shared: dict[str, Any], own: dict[str, Any]) -> str:
    """Cloudflare's tail: a queue per worker makes a connection wait behind a busy worker while another idles.
    Judged on the kernel's accept-queue waits, which the client's own stamps (its first-reply times, in the
    table) would blur with the load generator's delays."""
    p99, top, sd = "accept queue p99 ms", "accept queue max ms", "accept queue stddev ms"
    worse = own[p99] >= 1.5 * shared[p99] and own[top] >= 1.5 * shared[top]
    cf_shared, cf_own = (r.figures for r in NGINX_ACCEPT.reported)
    return say(
        HOLDS if worse else DIFFERS,
        "reuseport's even spread costs tail latency (a connection hashed to a busy worker waits)",
        f"the kernel's accept-queue wait p99 {shared[p99]} → {own[p99]} ms, max {shared[top]} → {own[top]} ms, stddev "
        f"{shared[sd]} → {own[sd]} ms (Cloudflare, client latency with busy workers: stddev {cf_shared['stddev']} → "
        f"{cf_own['stddev']}, max {cf_shared['max']} → {cf_own['max']})",
    )
