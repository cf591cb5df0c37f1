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
- **Unfinished work that matters.**  A closed-loop user always has one request in flight when the
  window closes, so the count alone says nothing.  Work still waiting is reported only when it had
  waited longer than the finished work's p99 and ``WAITING_FLOOR_MS``: "waiting ≥ 3.98 s: 9 requests".
- **Trends and headlines** (``loadtest.report.rules.headlines``).  How each design's rate went with load,
  and at most ``HEADLINES`` sentences per scenario, each naming its numbers and its cause.

The cells, standings and answers themselves are the types of ``loadtest.report.rules.ranked``.
"""

from __future__ import annotations

from loadtest.declare.scenarios import SCENARIOS
from loadtest.report.load import traits_of
from loadtest.report.rules.estimates import ESTIMATE_CPU_SHARE, NO_ESTIMATE, bounds, cpu_share, estimate_of
from loadtest.report.rules.findings import findings, num, waiting
from loadtest.report.rules.headlines import HEADLINES, by_design, headlines, trend, trend_sentence
from loadtest.report.rules.ranked import Cell, ScenarioAnswer, Standing
from loadtest.report.rules.stages import WINDOW_LABELS, WINDOW_STAGES
from loadtest.report.rules.summary import shown
from loadtest.report.rules.timeline_findings import timeline_findings

__all__ = [  # what the compare page, the terminal and the tests read of the answer
    "HEADLINES",
    "NO_ESTIMATE",
    "RULE",
    "STAGE_WORDS",
    "Cell",
    "ScenarioAnswer",
    "Standing",
    "answer",
    "cpu_share",
    "scenario_findings",
    "standings",
    "trend",
    "trend_sentence",
]
RULE = (
    "Ranked by users starved (fewest first), then req/s. If any design's measured rate is the load generator's "
    "or the shared machine's (client-bound, machine-bound), every design is ranked by its server-CPU estimate "
    "(est.: 1e6 ÷ CPU µs per request, × every core for processes) when every server was CPU-bound (≥ "
    f"{ESTIMATE_CPU_SHARE:.0%} of the CPU it could use), else every design by its measured rate, the bound "
    "flagged: never an estimate against a measurement."
)
STAGE_WORDS = WINDOW_LABELS  # the window's account: every user's time in the window, stage by stage


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
    if (num(row, "load_processes") or 1) > 1:  # not every cell had the same load generator: say which
        out.append(f"{int(row['load_processes'])} load processes")
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
        headlines(scenario, cells, table, cpus, connects := all(from_connect(c) for c in cells)),
        ranking=ranking(table),
        from_connect=connects,
    )


def from_connect(cell: Cell) -> bool:
    """A connect-per-request cell: a user's wait is connect start → its first reply byte."""
    return num(cell.row, "first_reply_p99_ms") is not None


def scenario_findings(scenario: str, cells: list[Cell], cpus: int | None) -> list[tuple[str, list[str]]]:
    """Every finding of a scenario, grouped: how each design's rate went with load, then each cell's own."""
    designs = by_design(cells)
    trends = [trend_sentence(scenario, d, cs[0], cs[-1], cpus) for d, cs in designs.items() if len(cs) > 1]
    groups = [("with load", trends)] if trends else []
    for design, cs in designs.items():
        for cell in cs:
            said = findings(cell.run, cell.row) + timeline_findings(cell.run, design)
            groups.append((f"{design} at {cell.row['users']} users", said))
    return groups
