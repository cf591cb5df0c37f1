"""A scenario's headlines and its designs' trends, read off the cells' summaries (``loadtest.report.rules.answer``
ranks; this says).

- **Trends.**  Between the lowest and the highest load: within ±15 % is flat, a rise "scales ×R", a fall
  "falls ×R" with the likely cause the data shows (accept queue, SYN retries, the load generator,
  server CPU, threads, starved users).
- **Headlines.**  At most ``HEADLINES`` sentences per scenario, each naming its numbers and its cause,
  in this order of weight: the leader, starved users, an overflowing accept queue, a fall, the server's
  CPU, the load generator's limit, the contrast of scaling and flat designs, where the time went.
"""

from __future__ import annotations

import math
from typing import Any

from loadtest.report.load import RunData, traits_of
from loadtest.report.rules.account import unaccepted_of
from loadtest.report.rules.estimates import server_cpu_percent
from loadtest.report.rules.findings import num
from loadtest.report.rules.ranked import Cell, Standing
from loadtest.report.rules.summary import SERVER_CPU_FULL, load_bound, shown

FLAT = 0.15  # a change within ±15 % is flat
HEADLINES = 5
QUEUED = ("half_open", "accept_queue", "pool_queue")  # waiting to be accepted or picked up, not served


def trend(lo: float, hi: float) -> tuple[str, float]:
    """("flat" | "scales" | "falls", R) from lo to hi: R ≥ 1 is the factor of the rise or the fall."""
    if not lo or not hi or lo != lo or hi != hi:
        return "n/a", math.nan
    ratio = hi / lo
    if 1 - FLAT <= ratio <= 1 + FLAT:
        return "flat", ratio
    return ("scales", ratio) if ratio > 1 else ("falls", 1 / ratio)


def likely_cause(row: dict[str, Any], traits: dict[str, bool], cpus: int | None, lower: dict[str, Any]) -> str:
    """Why a design's rate fell between two loads, as far as the higher load's figures show it."""
    causes = []
    if (num(row, "listen_overflows") or 0) > (num(lower, "listen_overflows") or 0):
        causes.append(
            f"the accept queue overflowed ({int(num(row, 'listen_overflows') or 0):,} packets dropped at "
            f"backlog {row.get('backlog')})"
        )
    if (num(row, "connections_syn_retried") or 0) > (num(lower, "connections_syn_retried") or 0):
        causes.append(f"{int(num(row, 'connections_syn_retried') or 0):,} connections waited on SYN retries")
    bound = load_bound(row, cpus)
    if bound:
        causes.append(
            "the load generator ran out of CPU"
            if bound == "client-bound"
            else "server and load generator competed for the CPU"
        )
    cpu = server_cpu_percent(row)
    if cpu is not None and cpu >= SERVER_CPU_FULL and not traits.get("uses_processes"):
        causes.append(f"the server's one interpreter at {cpu:.0f}% of a core")
    threads, before = num(row, "peak_threads"), num(lower, "peak_threads")
    if traits.get("uses_threads") and threads and before and threads >= 2 * before:
        causes.append(f"{int(threads):,} threads at peak")
    if num(row, "users_starved"):
        causes.append(f"{int(num(row, 'users_starved') or 0)} users starved")
    return "; ".join(causes[:2])


def trend_sentence(scenario: str, design: str, lo: Cell, hi: Cell, cpus: int | None) -> str:
    word, ratio = trend(float(lo.row["rps"]), float(hi.row["rps"]))
    said = {"flat": "stays flat", "scales": f"scales ×{ratio:.1f}", "falls": f"falls ×{ratio:.1f}"}.get(word, word)
    text = (
        f"{scenario}, {design}: {said} from {lo.row['users']} to {hi.row['users']} users "
        f"({lo.row['rps']:,.0f} → {hi.row['rps']:,.0f} req/s)"
    )
    cause = likely_cause(hi.row, traits_of(hi.run), cpus, lo.row) if word == "falls" else ""
    return text + (f": {cause}." if cause else ".")


def by_design(cells: list[Cell]) -> dict[str, list[Cell]]:
    """Each design's cells, lowest load first."""
    out: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: c.row["users"]):
        out.setdefault(str(cell.row["design"]), []).append(cell)
    return out


def headlines(
    scenario: str, cells: list[Cell], table: list[Standing], cpus: int | None, from_connect: bool = False
) -> list[str]:
    """At most HEADLINES sentences, in the module docstring's order of weight; ``from_connect``: the p99s are
    connect() start → first reply (connect-per-request), as the table's heads say."""
    designs = by_design(cells)
    top = {d: cs[-1] for d, cs in designs.items()}
    trends = {d: trend_sentence(scenario, d, cs[0], cs[-1], cpus) for d, cs in designs.items() if len(cs) > 1}
    out = [
        leader(scenario, table, from_connect),
        *(
            starved(s, top[s.design].run)
            for s in [s for s in table if any(b.startswith("starved") for b in s.badges)][:2]
        ),
        *overflowed(top),
        *(t for t in trends.values() if " falls ×" in t),
        *busy_servers(top),
        *bounds(table),
        *scaling(designs, trends, cells),
        *queued(table),
    ]
    return out[:HEADLINES]


def leader(scenario: str, table: list[Standing], from_connect: bool = False) -> str:
    """Who leads, at what, and who is last and why."""
    lead, last = table[0], table[-1]
    p99 = "p99 from connect" if from_connect else "p99"
    text = f"{lead.design} leads {scenario} with {lead.figure} req/s at {lead.users} users ({p99} {lead.p99})"
    if lead.estimate is not None:
        text += ": not every measured rate is the server's, so every design is ranked by its server-CPU estimate"
    elif "client-bound" in lead.badges:
        text += ": a rate the load generator set (client-bound), not the server's"
    if len(table) > 1:
        why = f" — {', '.join(last.badges)}" if last.badges else ""
        text += f"; {last.design} is last with {last.figure} ({p99} {last.p99}){why}"
    return text + "."


def starved(s: Standing, run: RunData) -> str:
    """A design that left users without a reply: how many, and where their connections were at the close."""
    traits = traits_of(run)
    how = (
        " serves one connection at a time"
        if traits.get("serves_one_at_a_time")
        else " has a fixed pool of workers, each held by one connection until it closes"
        if traits.get("pooled")
        else ""
    )
    total = int(s.served.split("/")[1])
    none = total - int(s.served.split("/")[0])
    starved_ids = (
        set(run.users.loc[run.users["requests"] == 0, "user_id"].astype(str)) if run.users is not None else set()
    )
    never, half = unaccepted_of(run.connections, starved_ids)
    where = f" ({s.waiting})" if s.waiting else ""
    if never:
        said = [f"{never - half} in the accept queue"] if never > half else []
        if half:
            # The seed's lesson: connect() returns at the handshake's second step, accept() after the third.
            # A dropped final ACK leaves the client "connected" and the server holding a request socket:
            # the overflowing queue starved them, not how the design serves what it accepted.
            how = ""
            said.append(
                f"{half} half-open (connect() returned, but the final ACK and request were dropped at "
                "the full accept queue)"
            )
        where = (
            f": {never} of their connections had connect() return but were not accepted by the window's "
            f"close — {' and '.join(said)}{where}"
        )
    return f"{s.design}{how}: {none} of {total} users got no reply in the whole window{where}."


def overflowed(top: dict[str, Cell]) -> list[str]:
    """The accept queue overflowing: on how many designs, and the worst's drops and SYN retries."""
    overflowing = [c for c in top.values() if num(c.row, "listen_overflows")]
    if not overflowing:
        return []
    r = max(overflowing, key=lambda c: num(c.row, "listen_overflows") or 0).row
    retried = int(num(r, "connections_syn_retried") or 0)
    return [
        f"The accept queue overflowed on {len(overflowing)} of {len(top)} designs; worst {r['design']}: "
        f"{int(r['listen_overflows']):,} packets dropped at backlog {r['backlog']} (SYNs, final ACKs and "
        f"early data), {retried:,} connections through SYN retries (the kernel retries a SYN after 1 s, "
        f"then each second); connect p99 {shown(r, 'connect_p99_ms')}, the slowest first reply "
        f"{shown(r, 'first_reply_max_ms')}."
    ]


def busy_servers(top: dict[str, Cell]) -> list[str]:
    """Servers at their CPU's limit: one interpreter cannot pass one core, processes can."""
    busy = {d: cpu for d, c in top.items() if (cpu := server_cpu_percent(c.row)) is not None and cpu >= SERVER_CPU_FULL}
    if not busy:
        return []

    def kind(design: str) -> str:
        traits = traits_of(top[design].run)
        return "processes" if traits.get("uses_processes") else "threads" if traits.get("uses_threads") else "one"

    # Why each cannot go further: one thread cannot pass a core; threads of one interpreter take turns at
    # its GIL; processes can use every core (each of them up to one).
    why = {
        "one": "cannot pass one core: one thread",
        "threads": "cannot pass one core: one interpreter, one GIL",
        "processes": "runs processes: it can use every core",
    }
    text = "Server CPU, % of one core: " + ", ".join(f"{d} {cpu:.0f}%" for d, cpu in busy.items())
    said = [
        f"{', '.join(d for d in busy if kind(d) == k)} {because}"
        for k, because in why.items()
        if any(kind(d) == k for d in busy)
    ]
    return [f"{text} — {'; '.join(said)}."]


def bounds(table: list[Standing]) -> list[str]:
    """Rates the load generator or the shared machine set, and what ranked the designs instead."""
    said = []
    for kind, whose in (("client-bound", "the load generator"), ("machine-bound", "the shared machine")):
        bound = [s.design for s in table if kind in s.bounds]
        if bound:
            said.append(
                f"{kind} on {len(bound)} of {len(table)} designs ({', '.join(bound)}): their rates measure {whose}"
            )
    if not said:
        return []
    lacking = ", ".join(s.design for s in table if s.no_estimate)
    how = (
        "estimates are 1e6 ÷ server CPU µs per request, × every core for processes — CPU-bound, linear"
        if table[0].estimate is not None
        else f"ranked by measured rates all the same: {lacking} not CPU-bound, no estimate"
    )
    return ["; ".join(said) + f"; {how}."]


def scaling(designs: dict[str, list[Cell]], trends: dict[str, str], cells: list[Cell]) -> list[str]:
    """The contrast of designs that scale with load and designs that stay flat."""
    if not trends:
        return []
    scales = [
        f"{d} ×{trend(float(cs[0].row['rps']), float(cs[-1].row['rps']))[1]:.1f}"
        for d, cs in designs.items()
        if len(cs) > 1 and " scales ×" in trends[d]
    ]
    flat = [d for d in trends if " stays flat" in trends[d]]
    first, final = min(c.row["users"] for c in cells), max(c.row["users"] for c in cells)
    if not (scales and flat):
        return []
    return [
        f"From {first} to {final} users {', '.join(scales)} scale; {', '.join(flat)} "
        f"stay{'s' if len(flat) == 1 else ''} flat."
    ]


def queued(table: list[Standing]) -> list[str]:
    """Where the time went, when most of it was waiting to be accepted or picked up."""

    def waited(s: Standing) -> float:
        return sum(s.shares.get(k, 0) for k in QUEUED)

    slowest = max(table, key=waited)
    if waited(slowest) < 0.5:
        return []
    return [
        f"{slowest.design}: {waited(slowest):.0%} of all its users' time in the window, together, was spent waiting "
        "to be accepted or picked up (half-open, accept queue, pool queue), not being served."
    ]
