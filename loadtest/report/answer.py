"""The answer first: which design wins each scenario, at what, and why — read off the cells' summaries.

Pure rules, no HTML and no terminal: the compare page (``loadtest.report.compare``) and the terminal
(``loadtest.compare``) show the same standings, badges and headlines.

- **Standings.**  One row per design at the scenario's highest load.  Designs that served every user
  rank above those that starved some (a high rate for one user out of fifty is not a win), then by
  throughput.  Where a cell was client-bound its measured rate is the load generator's, so it is
  ranked by its server-CPU estimate (``server_capacity_rps_per_core``) when that is higher, and the
  standing says which figure it is.
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

from loadtest.accounting import waiting_words
from loadtest.kinds import CONNECT, OPS
from loadtest.report.findings import findings, num, timeline_findings
from loadtest.report.load import RunData, merged_histogram, traits_of, unfinished_ages
from loadtest.report.summary import flag, load_bound, shown
from loadtest.report.timeline import SHARES
from loadtest.scenarios import SCENARIOS

FLAT = 0.15  # a change within ±15 % is flat
HEADLINES = 5
SERVER_CPU_FULL = 85.0  # % of a core
STAGE_WORDS = {"handshake": "handshake", "accept_queue": "accept queue", "pool_queue": "pool queue",
               "request_wait": "request arriving", "service": "service", "transfer": "reply transfer"}  # fmt: skip


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
    estimate: float | None  # rps one core could serve, from server CPU, when it outranks a client-bound rate
    p50: str
    p99: str
    served: str
    shares: dict[str, float]  # where the time went (share of each connection's first request), {} if unmeasured
    badges: list[str]
    waiting: str

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
        causes.append(f"the accept queue overflowed ({int(num(row, 'listen_overflows') or 0):,} packets dropped at "
                      f"backlog {row.get('backlog')})")  # fmt: skip
    if (num(row, "connections_syn_retried") or 0) > (num(lower, "connections_syn_retried") or 0):
        causes.append(f"{int(num(row, 'connections_syn_retried') or 0):,} connections waited on SYN retries")
    bound = load_bound(row, cpus)
    if bound:
        causes.append("the load generator ran out of CPU" if bound == "client-bound" else
                      "server and load generator competed for the CPU")  # fmt: skip
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
    text = (f"{scenario}, {design}: {said} from {lo.row['users']} to {hi.row['users']} users "
            f"({lo.row['rps']:,.0f} → {hi.row['rps']:,.0f} req/s)")  # fmt: skip
    cause = likely_cause(hi.row, traits_of(hi.run), cpus, lo.row) if word == "falls" else ""
    return text + (f": {cause}." if cause else ".")


def waiting(run: RunData) -> str:
    """'waiting ≥ 3.98 s: 9 requests, 2 connects' — work still in flight when the window closed that had
    waited longer than the finished work's p99 and WAITING_FLOOR_MS; '' when none had."""
    groups = []
    for kinds, noun in ((OPS, "request"), ((CONNECT,), "connect")):
        hist = merged_histogram(run, kinds)
        p99 = hist.get_value_at_percentile(99) / 1000 if hist is not None and hist.get_total_count() else 0.0
        groups.append((noun, [a / 1000 for a in unfinished_ages(run, kinds)], p99))
    return waiting_words(groups)


def badges(cell: Cell, cpus: int | None) -> list[str]:
    row, out = cell.row, []
    if cell.died:
        out.append("server died")
    if bound := load_bound(row, cpus):
        out.append(bound)
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
    """One standing per design, at its highest load, best first."""
    top: dict[str, Cell] = {}
    for cell in cells:
        design = str(cell.row["variant"])
        if design not in top or cell.row["users"] > top[design].row["users"]:
            top[design] = cell
    out = []
    for design, cell in top.items():
        row = cell.row
        rps = float(row["rps"]) if row["rps"] == row["rps"] else 0.0
        estimate = num(row, "server_capacity_rps_per_core")
        served, starved = int(num(row, "users_served") or 0), int(num(row, "users_starved") or 0)
        # The estimate stands in for a client-bound rate only where CPU is what would bound the server:
        # not where users starved, nor for a design that serves one connection at a time.
        use_estimate = (flag(row.get("client_bound")) and estimate is not None and estimate > rps and not starved
                        and not traits_of(cell.run).get("serves_one_at_a_time"))  # fmt: skip
        shares = {s: float(row[f"first_request_share_{s}"]) for s in SHARES
                  if num(row, f"first_request_share_{s}") is not None}  # fmt: skip
        out.append(Standing(0, design, int(row["users"]), rps, estimate if use_estimate else None,
                            shown(row, "latency_p50_ms"), shown(row, "latency_p99_ms"),
                            f"{served}/{served + starved}" if served + starved else "n/a", shares,
                            badges(cell, cpus), waiting(cell.run)))  # fmt: skip
    ranked_cells = {s.design: top[s.design] for s in out}
    out.sort(key=lambda s: (ranked_cells[s.design].died, "starved" in " ".join(s.badges),
                            -(s.estimate if s.estimate is not None else s.rps)))  # fmt: skip
    for i, s in enumerate(out, 1):
        s.rank = i
    return out


def answer(scenario: str, cells: list[Cell], cpus: int | None) -> ScenarioAnswer:
    """A scenario's standings and headlines."""
    table = standings(cells, cpus)
    declared = SCENARIOS.get(scenario)
    users = max(int(c.row["users"]) for c in cells)
    return ScenarioAnswer(scenario, declared.question if declared else "", users, table,
                          headlines(scenario, cells, table, cpus))  # fmt: skip


def headlines(scenario: str, cells: list[Cell], table: list[Standing], cpus: int | None) -> list[str]:
    by_design: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: c.row["users"]):
        by_design.setdefault(str(cell.row["variant"]), []).append(cell)
    top = {d: cs[-1] for d, cs in by_design.items()}
    out = []
    lead, last = table[0], table[-1]
    text = f"{lead.design} leads {scenario} with {lead.figure} req/s at {lead.users} users (p99 {lead.p99})"
    if lead.estimate is not None:
        text += ": the measured rate is the load generator's, so it is ranked by its server-CPU estimate"
    if len(table) > 1:
        why = f" — {', '.join(last.badges)}" if last.badges else ""
        text += f"; {last.design} is last with {last.figure} (p99 {last.p99}){why}"
    out.append(text + ".")
    for s in [s for s in table if any(b.startswith("starved") for b in s.badges)][:2]:
        traits = traits_of(top[s.design].run)
        how = (" serves one connection at a time" if traits.get("serves_one_at_a_time") else
               " has a fixed pool of workers, all busy" if traits.get("pooled") else "")  # fmt: skip
        total = int(s.served.split("/")[1])
        starved = total - int(s.served.split("/")[0])
        never = int(num(top[s.design].row, "connections_never_accepted") or 0)
        where = f" ({s.waiting})" if s.waiting else ""
        if never and s.waiting:
            where = f": {never} of their connections were never accepted, still in the accept queue at the end{where}"
        out.append(f"{s.design}{how}: {starved} of {total} users got no reply in the whole window{where}.")
    overflowed = [c for c in top.values() if num(c.row, "listen_overflows")]
    if overflowed:
        worst = max(overflowed, key=lambda c: num(c.row, "listen_overflows") or 0)
        r = worst.row
        retried = int(num(r, "connections_syn_retried") or 0)
        out.append(f"The accept queue overflowed on {len(overflowed)} of {len(top)} designs; worst {r['variant']}: "
                   f"{int(r['listen_overflows']):,} packets dropped at backlog {r['backlog']} (SYNs, final ACKs and "
                   f"early data), {retried:,} connections through SYN retries (about 1, 2, 3 s each); connect p99 "
                   f"{shown(r, 'connect_p99_ms')}, the slowest first reply {shown(r, 'first_reply_max_ms')}.")
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
    bound = [s.design for s in table if "client-bound" in s.badges]
    if bound:
        out.append(f"client-bound on {len(bound)} of {len(table)} designs ({', '.join(bound)}): their rates measure "
                   "the load generator; estimates are 1e6 ÷ server CPU µs per request — one core, CPU-bound, linear.")
    if trends:
        scaling = [f"{d} ×{trend(float(cs[0].row['rps']), float(cs[-1].row['rps']))[1]:.1f}"
                   for d, cs in by_design.items() if len(cs) > 1 and " scales ×" in trends[d]]  # fmt: skip
        flat = [d for d in trends if " stays flat" in trends[d]]
        first, final = min(c.row["users"] for c in cells), max(c.row["users"] for c in cells)
        if scaling and flat:
            out.append(f"From {first} to {final} users {', '.join(scaling)} scale; {', '.join(flat)} "
                       f"stay{'s' if len(flat) == 1 else ''} flat.")  # fmt: skip
    slowest = max(table, key=lambda s: s.shares.get("accept_queue", 0) + s.shares.get("pool_queue", 0))
    queued = slowest.shares.get("accept_queue", 0) + slowest.shares.get("pool_queue", 0)
    if queued >= 0.5:
        out.append(f"{slowest.design}: {queued:.0%} of its connections' first-request time was spent queued "
                   "(accept queue and pool queue), not being served.")  # fmt: skip
    return out[:HEADLINES]


def scenario_findings(scenario: str, cells: list[Cell], cpus: int | None) -> list[tuple[str, list[str]]]:
    """Every finding of a scenario, grouped: how each design's rate went with load, then each cell's own."""
    by_design: dict[str, list[Cell]] = {}
    for cell in sorted(cells, key=lambda c: c.row["users"]):
        by_design.setdefault(str(cell.row["variant"]), []).append(cell)
    trends = [trend_sentence(scenario, d, cs[0], cs[-1], cpus) for d, cs in by_design.items() if len(cs) > 1]
    groups = [("with load", trends)] if trends else []
    for design, cs in by_design.items():
        for cell in cs:
            said = findings(cell.run, cell.row) + timeline_findings(cell.run, design)
            groups.append((f"{design} at {cell.row['users']} users", said))
    return groups


def server_cpu_percent(row: dict[str, Any]) -> float | None:
    cpu_us, rps = num(row, "server_cpu_us_per_request"), num(row, "rps")
    return cpu_us * rps / 1e4 if cpu_us is not None and rps is not None else None
