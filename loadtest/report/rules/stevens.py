"""Stevens, UNP vol. 1 chapter 30, reproduced: the book's table and its conclusions, measured here.

Stevens' client opens connections one after another from several processes,
asks for N bytes, reads them and closes; he reports each server design's
process-control CPU (user + system, of the server and its reaped children) as
the difference from the iterative server's.  The ``unp30`` scenario is that
client; this module lays its cells out like the book's table — per design,
server user and system CPU µs per connection, their total and Δ from the
iterative baseline — beside a published Linux reproduction, and checks each of
the book's conclusions against the numbers.

Which design a design is comes from its declared ``stevens`` attribute
(serv00 …), announced by the server and recorded in run.json; the baseline is
the one that ``serves_one_at_a_time``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.declare.scenarios import UNP30, Check
from loadtest.report.load import RunData, traits_of

MUCH = 1.5  # "much faster": at least this ratio
# Dan Kegel's reproduction on Linux (Pentium III, Red Hat 6.2): user / system seconds for the book's client run.
KEGEL_SECONDS = {
    "serv00": (0.5, 5.0),
    "serv01": (3.7, 17.8),
    "serv02": (0.6, 7.1),
    "serv03": (0.8, 7.8),
    "serv05": (0.9, 6.4),
    "serv07": (0.8, 7.1),
    "serv08": (1.0, 5.5),
}
BOOK_DESIGNS = {
    "serv00": "iterative",
    "serv01": "fork per client",
    "serv02": "pre-forked, each child calls accept",
    "serv03": "pre-forked, file lock around accept",
    "serv05": "pre-forked, parent passes the descriptor",
    "serv06": "thread per client",
    "serv07": "pre-threaded, mutex around accept",
    "serv08": "pre-threaded, main thread accepts and hands off",
}


def stevens_of(run: RunData) -> str:
    declared = (run.info.get("server") or {}).get("stevens")
    if declared:
        return str(declared)
    from servers import DESIGNS, design_class

    design = run.info.get("design", "")
    return design_class(design).stevens if design in DESIGNS else ""


@UNP30.check
def check(runs: list[RunData], summary: pd.DataFrame) -> Check | None:
    """The unp30 scenario's check: the book's table measured here, and its conclusions held against it."""
    book = table(runs, summary)
    if book is None:
        return None
    shown = book.rename(
        columns={
            "book": "Stevens' design",
            "user_us": "user µs/conn",
            "sys_us": "system µs/conn",
            "total_us": "total µs/conn",
            "delta_us": "Δ from iterative µs",
            "kegel_total_us": "Kegel (Linux, PIII) total µs/conn",
            "kegel_delta_us": "Kegel Δ µs",
        }
    )
    return Check(
        "Reproducing Stevens, UNP vol. 1 chapter 30",
        "Server CPU (user + system, of the server and its reaped children) per connection of Stevens' client: "
        "connect, ask for 4,000 bytes, read them, close. Δ is the book's process-control CPU: the difference "
        "from the iterative server. Kegel's columns: his published Linux reproduction (seconds for the book's "
        "5,000 connections, per connection here).",
        shown,
        conclusions(book),
    )


def table(runs: list[RunData], summary: pd.DataFrame) -> pd.DataFrame | None:
    """One row per design of the scenario's cells, like the book's table; None without cells."""
    rows = []
    for run, (_, row) in zip(runs, summary.iterrows(), strict=True):
        design = stevens_of(run)
        kegel = KEGEL_SECONDS.get(design)
        rows.append(
            {
                "design": row["design"],
                "book": f"{design}: {BOOK_DESIGNS[design]}" if design in BOOK_DESIGNS else "(not in the book)",
                "iterative": bool(traits_of(run).get("serves_one_at_a_time")),
                "connections": int(row["requests"]),
                "user_us": row["server_user_us_per_request"],
                "sys_us": row["server_sys_us_per_request"],
                "total_us": row["server_cpu_us_per_request"],
                "kegel_total_us": round((kegel[0] + kegel[1]) / 5000 * 1e6) if kegel else None,
            }
        )
    if not rows:
        return None
    out = pd.DataFrame(rows)
    base = out.loc[out["iterative"], "total_us"]
    out["delta_us"] = (out["total_us"] - base.iloc[0]).round(1) if len(base) else float("nan")
    kegel_base = out.loc[out["iterative"], "kegel_total_us"]
    if len(kegel_base) and kegel_base.iloc[0] is not None:
        out["kegel_delta_us"] = [k - kegel_base.iloc[0] if k is not None else None for k in out["kegel_total_us"]]
    else:
        out["kegel_delta_us"] = None
    return out.drop(columns=["iterative"])


def conclusions(t: pd.DataFrame) -> list[str]:
    """The book's conclusions, each said to hold or not here, with the numbers."""
    by_design: dict[str, dict[str, Any]] = {}
    for _, r in t.iterrows():
        design = str(r["book"]).split(":")[0]
        by_design[design] = dict(r)
    out = []
    fork = by_design.get("serv01")
    measured = t["total_us"].notna()
    if not measured.all():
        out.append(
            "CPU per connection not measured for " + ", ".join(t.loc[~measured, "design"]) + ": fewer than "
            "2 CPU ticks in the window (run more connections, --connections)."
        )
    if fork is not None and fork["total_us"] == fork["total_us"] and measured.sum() > 1:
        out.append(fork_dearest(t[(t["design"] != fork["design"]) & measured], fork))
    pool = by_design.get("serv02")
    if fork is not None and pool is not None:
        out.append(pools_cut(fork, pool))
    each, handoff = by_design.get("serv07"), by_design.get("serv08")
    if each is not None and handoff is not None:
        diff = handoff["total_us"] - each["total_us"]
        verdict = "holds" if diff > 0 else "does not hold"
        out.append(
            f'"Letting every thread call accept is faster than having one thread accept and hand off": {verdict} '
            f"here — {each['design']} {each['total_us']:,.0f} µs against {handoff['design']} "
            f"{handoff['total_us']:,.0f} µs per connection ({diff:+,.0f} µs for the hand-off)."
        )
    threads = threads_faster([(by_design.get("serv06"), fork), (each, pool)])
    return out + ([threads] if threads else [])


Row = dict[str, Any]


def fork_dearest(others: pd.DataFrame, fork: Row) -> str:
    dearest = others.loc[others["total_us"].idxmax()]
    ratio = fork["total_us"] / dearest["total_us"] if dearest["total_us"] else float("inf")
    verdict = "holds" if ratio >= 2 else "does not hold"
    return (
        f'"Fork per client is by far the most expensive": {verdict} here — {fork["design"]} '
        f"{fork['total_us']:,.0f} µs per connection, ×{ratio:.1f} the next dearest ({dearest['design']}, "
        f"{dearest['total_us']:,.0f} µs)."
    )


def pools_cut(fork: Row, pool: Row) -> str:
    f_delta, p_delta = fork["delta_us"], pool["delta_us"]
    factor = f_delta / p_delta if p_delta and p_delta > 0 else float("inf")
    verdict = "holds" if factor >= 10 else "does not hold"
    return (
        f'"Pools cut process-control CPU by a factor of 10 or more": {verdict} here — Δ from the iterative '
        f"server {f_delta:,.0f} µs per connection for {fork['design']} against {p_delta:,.0f} µs for "
        f"{pool['design']}" + (f" (×{factor:.0f})." if factor != float("inf") else " (no more than iterative).")
    )


def threads_faster(pairs: list[tuple[Row | None, Row | None]]) -> str:
    """Threads against processes, pair by pair (thread per client against fork per client, pre-threaded
    against pre-forked); "" when no pair was measured."""
    said = [
        f"{t_['design']} {t_['total_us']:,.0f} µs vs {p['design']} {p['total_us']:,.0f} µs "
        f"(×{p['total_us'] / t_['total_us']:.1f})"
        for t_, p in pairs
        if t_ is not None and p is not None and t_["total_us"]
    ]
    if not said:
        return ""
    ratios = [p["total_us"] / t_["total_us"] for t_, p in pairs if t_ is not None and p is not None and t_["total_us"]]
    if all(r >= MUCH for r in ratios):
        verdict = "holds"
    elif any(r >= MUCH for r in ratios):
        verdict = f"holds in part (×{MUCH:g} or more only where marked)"
    elif all(r > 1 for r in ratios):
        verdict = f"threads are faster, but not by ×{MUCH:g}"
    else:
        verdict = "does not hold"
    marked = [f"{text}{' ✓' if r >= MUCH else ''}" for text, r in zip(said, ratios, strict=True)]
    return f'"Threads are normally much faster than processes": {verdict} here — ' + "; ".join(marked) + "."
