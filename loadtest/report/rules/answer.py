"""The answer first: which design wins each scenario, at what, and why — read off the cells' summaries.

Pure rules, no HTML and no terminal: the compare page (``loadtest.report.compare_page``) and the terminal
(``loadtest.matrix.compare``) show the same standings, badges and headlines.

- **Standings.**  One row per design at the scenario's highest load, ranked by one rule, stated once
  (``RULE``) and shown under every ranked table.  Fewest users starved first: a design that left more
  users without a single reply ranks below one that left fewer, whatever its rate (a high rate for one
  user out of fifty is not a win); a server that died ranks below every one that did not.  Then the rate,
  and within one scenario every design by the same kind of figure, never an estimate against a
  measurement.  While every measured rate is the server's own, that is the measured rate.  When any
  design's measured rate is not the server's — client-bound (the load generator ran out of CPU) or
  machine-bound (server and load generator together filled every core), both flags read by
  ``summary.load_bound`` and both shown — every design is ranked by its server-CPU estimate: what it
  could serve CPU-bound, its cost linear, on the cores it can use (``server_capacity_rps_per_core``, 1e6
  ÷ server CPU µs per request, for one interpreter; that × every core for processes, so that an estimate
  stands in for a rate, like with like), provided every design's estimate means something: its server
  was CPU-bound, at ≥ ``ESTIMATE_CPU_SHARE`` of the CPU it could use (one core for one interpreter,
  every core for processes, less what the load generator used).  If any server was not (a
  one-at-a-time server at 39 % of a core is bounded by its round trips, not its CPU, so CPU per request
  says nothing of what it could serve), no estimate ranks any design: every design is ranked by its
  measured rate, the bound flagged, and the one without a meaningful estimate says "not CPU-bound: no
  estimate".
- **Trends.**  Between the lowest and the highest load: within ±15 % is flat, a rise "scales ×R", a fall
  "falls ×R" with the likely cause the data shows (accept queue, SYN retries, the load generator,
  server CPU, threads, starved users).
- **Unfinished work that matters.**  A closed-loop user always has one request in flight when the
  window closes, so the count alone says nothing.  Work still waiting is reported only when it had
  waited longer than the finished work's p99 and ``WAITING_FLOOR_MS``: "waiting ≥ 3.98 s: 9 requests".
- **Headlines.**  At most ``HEADLINES`` sentences per scenario, each naming its numbers and its cause,
  in this order of weight: the leader, starved users, an overflowing accept queue, a fall, the load
  generator's limit, the contrast of scaling and flat designs, where the time went.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loadtest.declare.scenarios import SCENARIOS
from loadtest.report.load import RunData, traits_of
from loadtest.report.rules.account import unaccepted_of
from loadtest.report.rules.estimates import (
    ESTIMATE_CPU_SHARE,
    NO_ESTIMATE,
    bounds,
    cpu_share,
    estimate_of,
    server_cpu_percent,
)
from loadtest.report.rules.findings import findings, num, timeline_findings, waiting
from loadtest.report.rules.summary import load_bound, shown
from loadtest.report.rules.timeline import WINDOW_LABELS, WINDOW_STAGES

FLAT = 0.15  # a change within ±15 % is flat
HEADLINES = 5
SERVER_CPU_FULL = 85.0  # % of a core
RULE = (
    "Ranked by users starved (fewest first), then req/s. If any design's measured rate is the load generator's "
    "or the shared machine's (client-bound, machine-bound), every design is ranked by its server-CPU estimate "
    "(est.: 1e6 ÷ CPU µs per request, × every core for processes) when every server was CPU-bound (≥ "
    f"{ESTIMATE_CPU_SHARE:.0%} of the CPU it could use), else every design by its measured rate, the bound "
    "flagged: never an estimate against a measurement."
)
STAGE_WORDS = WINDOW_LABELS  # the window's account: every user's time in the window, stage by stage


@dataclass
class Cell:
    """One finished cell: its summary row and its run folder's data."""

    row: dict[str, Any]
    run: RunData

    @property
    def died(self) -> bool:
        return bool(self.run.info.get("server")) and self.run.info.get("server_stopped") is None


@dataclass
class Standing:
    rank: int
    design: str
    users: int
    rps: float
    estimate: float | None  # rps it could serve CPU-bound on its cores (estimate_of), when estimates rank (RULE)
    p50: str
    p99: str
    served: str
    shares: dict[str, float]  # where the time went: the window's account (every user's time), {} if unmeasured
    badges: list[str]
    waiting: str
    bounds: list[str] = field(default_factory=list)  # "client-bound", "machine-bound": the rate is not the server's
    cpu_share: float | None = None  # server CPU ÷ the CPU it could use (usable_cpu); None without a CPU figure
    no_estimate: str = ""  # NO_ESTIMATE where the scenario needed estimates and this design's means nothing

    @property
    def figure(self) -> str:
        if self.estimate is not None:
            return f"≈ {self.estimate:,.0f} est. (measured {self.rps:,.0f})"
        return f"{self.rps:,.0f}"


@dataclass
class ScenarioAnswer:
    scenario: str
    question: str
    users: int
    standings: list[Standing]
    headlines: list[str]
    findings: list[str] = field(default_factory=list)
    ranking: str = ""  # one line: which figure ranked this scenario, and why (RULE applied)
    from_connect: bool = False  # p50 and p99 from connect() start to the first reply byte (connect-per-request)

    @property
    def latency_heads(self) -> tuple[str, str]:
        """What the p50 and p99 columns measure: what a user waited, connect included where it connects each
        time (conn-storm's ECHO alone read p99.9 6.4 ms where its users waited 1.03 s on SYN retries)."""
        return ("p50 from connect", "p99 from connect") if self.from_connect else ("p50", "p99")


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


def meaningful_estimate(cell: Cell, share: float | None, cpus: int | None) -> float | None:
    """The cell's estimate (estimate_of) where it means something — its server was CPU-bound, at
    >= ESTIMATE_CPU_SHARE of the CPU it could use — else None."""
    if share is None or share < ESTIMATE_CPU_SHARE:
        return None
    return estimate_of(cell.row, traits_of(cell.run), cpus)


def badges(cell: Cell, cpus: int | None) -> list[str]:
    row, out = cell.row, []
    if cell.died:
        out.append("server died")
    out.extend(bounds(row, cpus))
    if starved := num(row, "users_starved"):
        out.append(f"starved {int(starved)}/{int(starved + (num(row, 'users_served') or 0))}")
    if overflows := num(row, "listen_overflows"):
        out.append(f"overflowed: {int(overflows):,} dropped")
    if failures := num(row, "failures"):
        out.append(f"{int(failures):,} failures")
    if (row.get("pipeline") or 1) > 1:
        out.append(f"pipelined ×{row['pipeline']}")
    return out


def standings(cells: list[Cell], cpus: int | None) -> list[Standing]:
    """One standing per design, at its highest load, best first, by RULE (the module's docstring)."""
    top: dict[str, Cell] = {}
    for cell in cells:
        design = str(cell.row["design"])
        if design not in top or cell.row["users"] > top[design].row["users"]:
            top[design] = cell
    out = []
    for design, cell in top.items():
        row = cell.row
        rps = float(row["rps"]) if row["rps"] == row["rps"] else 0.0
        served, starved = int(num(row, "users_served") or 0), int(num(row, "users_starved") or 0)
        shares = {
            s: float(row[f"window_share_{s}"]) for s in WINDOW_STAGES if num(row, f"window_share_{s}") is not None
        }
        p50, p99 = (
            ("first_reply_p50_ms", "first_reply_p99_ms") if from_connect(cell) else ("latency_p50_ms", "latency_p99_ms")
        )
        out.append(
            Standing(
                0,
                design,
                int(row["users"]),
                rps,
                None,
                shown(row, p50),
                shown(row, p99),
                f"{served}/{served + starved}" if served + starved else "n/a",
                shares,
                badges(cell, cpus),
                waiting(cell.run),
                bounds(row, cpus),
                cpu_share(row, traits_of(cell.run), cpus),
            )
        )
    # One kind of figure for every design of the scenario: estimates only where some measured rate is not the
    # server's and every design's estimate means something (its server CPU-bound), else every measured rate.
    if any(s.bounds for s in out):
        estimates = {s.design: meaningful_estimate(top[s.design], s.cpu_share, cpus) for s in out}
        by_estimate = all(e is not None for e in estimates.values())
        for s in out:
            if by_estimate:
                s.estimate = estimates[s.design]
            elif estimates[s.design] is None:
                s.no_estimate = NO_ESTIMATE
    out.sort(
        key=lambda s: (
            top[s.design].died,
            int(num(top[s.design].row, "users_starved") or 0),
            -(s.estimate if s.estimate is not None else s.rps),
        )
    )
    for i, s in enumerate(out, 1):
        s.rank = i
    return out


def ranking(table: list[Standing]) -> str:
    """One line under a ranked table: which figure ranked it, and why, by RULE."""
    starved, enough = "users starved (fewest first)", f"{ESTIMATE_CPU_SHARE:.0%} of the CPU it could use"
    bound = [s for s in table if s.bounds]
    if not bound:
        return f"Ranked by {starved}, then measured req/s: every rate is its server's own (none client-/machine-bound)."
    who = "; ".join(f"{s.design} {' and '.join(s.bounds)}" for s in bound)
    if all(s.estimate is not None for s in table):
        return (
            f"Ranked by {starved}, then every design's server-CPU estimate (est.): {who}, so not every measured "
            f"rate is the server's, and every server was CPU-bound (≥ {enough})."
        )
    lacking = [
        f"{s.design} ({s.cpu_share:.0%})" if s.cpu_share is not None else f"{s.design} (no CPU figure)"
        for s in table
        if s.no_estimate
    ]
    understate = "that rate understates its server" if len(bound) == 1 else "those rates understate their servers"
    return (
        f"Ranked by {starved}, then measured req/s, every design alike: {who}, so {understate}, "
        f"but {', '.join(lacking)} {'was' if len(lacking) == 1 else 'were'} not CPU-bound (under "
        f"{enough}), so no estimate ranks any design."
    )


def answer(scenario: str, cells: list[Cell], cpus: int | None) -> ScenarioAnswer:
    """A scenario's standings and headlines."""
    table = standings(cells, cpus)
    declared = SCENARIOS.get(scenario)
    users = max(int(c.row["users"]) for c in cells)
    return ScenarioAnswer(
        scenario,
        declared.question if declared else "",
        users,
        table,
        headlines(scenario, cells, table, cpus),
        ranking=ranking(table),
        from_connect=all(from_connect(c) for c in cells),
    )


def from_connect(cell: Cell) -> bool:
    """A connect-per-request cell: a user's wait is connect start → its first reply byte."""
    return num(cell.row, "first_reply_p99_ms") is not None


def headlines(scenario: str, cells: list[Cell], table: list[Standing], cpus: int | None) -> list[str]:
    by_design: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: c.row["users"]):
        by_design.setdefault(str(cell.row["design"]), []).append(cell)
    top = {d: cs[-1] for d, cs in by_design.items()}
    out = []
    lead, last = table[0], table[-1]
    text = f"{lead.design} leads {scenario} with {lead.figure} req/s at {lead.users} users (p99 {lead.p99})"
    if lead.estimate is not None:
        text += ": not every measured rate is the server's, so every design is ranked by its server-CPU estimate"
    elif "client-bound" in lead.badges:
        text += ": a rate the load generator set (client-bound), not the server's"
    if len(table) > 1:
        why = f" — {', '.join(last.badges)}" if last.badges else ""
        text += f"; {last.design} is last with {last.figure} (p99 {last.p99}){why}"
    out.append(text + ".")
    for s in [s for s in table if any(b.startswith("starved") for b in s.badges)][:2]:
        traits = traits_of(top[s.design].run)
        how = (
            " serves one connection at a time"
            if traits.get("serves_one_at_a_time")
            else " has a fixed pool of workers, all busy"
            if traits.get("pooled")
            else ""
        )
        total = int(s.served.split("/")[1])
        starved = total - int(s.served.split("/")[0])
        run = top[s.design].run
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
        out.append(f"{s.design}{how}: {starved} of {total} users got no reply in the whole window{where}.")
    overflowed = [c for c in top.values() if num(c.row, "listen_overflows")]
    if overflowed:
        worst = max(overflowed, key=lambda c: num(c.row, "listen_overflows") or 0)
        r = worst.row
        retried = int(num(r, "connections_syn_retried") or 0)
        out.append(
            f"The accept queue overflowed on {len(overflowed)} of {len(top)} designs; worst {r['design']}: "
            f"{int(r['listen_overflows']):,} packets dropped at backlog {r['backlog']} (SYNs, final ACKs and "
            f"early data), {retried:,} connections through SYN retries (the kernel retries a SYN after 1 s, "
            f"then each second); connect p99 {shown(r, 'connect_p99_ms')}, the slowest first reply "
            f"{shown(r, 'first_reply_max_ms')}."
        )
    trends = {d: trend_sentence(scenario, d, cs[0], cs[-1], cpus) for d, cs in by_design.items() if len(cs) > 1}
    out.extend(t for t in trends.values() if " falls ×" in t)
    busy = {d: cpu for d, c in top.items() if (cpu := server_cpu_percent(c.row)) is not None and cpu >= SERVER_CPU_FULL}
    if busy:
        one = [f"{d} {cpu:.0f}%" for d, cpu in busy.items() if not traits_of(top[d].run).get("uses_processes")]
        many = [f"{d} {cpu:.0f}%" for d, cpu in busy.items() if traits_of(top[d].run).get("uses_processes")]
        text = f"Server CPU, % of one core: {', '.join(one + many)}"
        if one:
            text += f" — {', '.join(d.split()[0] for d in one)} cannot pass one core: one interpreter, one GIL"
        if many:
            text += f"; {', '.join(d.split()[0] for d in many)} runs processes, a core each"
        out.append(text + ".")
    said = []
    for kind, whose in (("client-bound", "the load generator"), ("machine-bound", "the shared machine")):
        bound = [s.design for s in table if kind in s.bounds]
        if bound:
            said.append(
                f"{kind} on {len(bound)} of {len(table)} designs ({', '.join(bound)}): their rates measure {whose}"
            )
    if said:
        lacking = ", ".join(s.design for s in table if s.no_estimate)
        how = (
            "estimates are 1e6 ÷ server CPU µs per request, × every core for processes — CPU-bound, linear"
            if lead.estimate is not None
            else f"ranked by measured rates all the same: {lacking} not CPU-bound, no estimate"
        )
        out.append("; ".join(said) + f"; {how}.")
    if trends:
        scaling = [
            f"{d} ×{trend(float(cs[0].row['rps']), float(cs[-1].row['rps']))[1]:.1f}"
            for d, cs in by_design.items()
            if len(cs) > 1 and " scales ×" in trends[d]
        ]
        flat = [d for d in trends if " stays flat" in trends[d]]
        first, final = min(c.row["users"] for c in cells), max(c.row["users"] for c in cells)
        if scaling and flat:
            out.append(
                f"From {first} to {final} users {', '.join(scaling)} scale; {', '.join(flat)} "
                f"stay{'s' if len(flat) == 1 else ''} flat."
            )

    def waited(s: Standing) -> float:
        return sum(s.shares.get(k, 0) for k in ("half_open", "accept_queue", "pool_queue"))

    slowest = max(table, key=waited)
    if waited(slowest) >= 0.5:
        out.append(
            f"{slowest.design}: {waited(slowest):.0%} of every user's time in the window was spent waiting "
            "to be accepted or picked up (half-open, accept queue, pool queue), not being served."
        )
    return out[:HEADLINES]


def scenario_findings(scenario: str, cells: list[Cell], cpus: int | None) -> list[tuple[str, list[str]]]:
    """Every finding of a scenario, grouped: how each design's rate went with load, then each cell's own."""
    by_design: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: c.row["users"]):
        by_design.setdefault(str(cell.row["design"]), []).append(cell)
    trends = [trend_sentence(scenario, d, cs[0], cs[-1], cpus) for d, cs in by_design.items() if len(cs) > 1]
    groups = [("with load", trends)] if trends else []
    for design, cs in by_design.items():
        for cell in cs:
            said = findings(cell.run, cell.row) + timeline_findings(cell.run, design)
            groups.append((f"{design} at {cell.row['users']} users", said))
    return groups
