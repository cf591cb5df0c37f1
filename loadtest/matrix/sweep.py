"""``socklab sweep``: latency against offered load for every design, and where each one breaks.

Closed-loop users cannot say how much load a design takes before its latency
explodes: they slow down when the server does.  Open-loop steps can (Gil Tene's
latency-against-load method, wrk2's ``-R``).  For each scenario that declares a ladder
(``loadtest.declare.scenarios``: ``sweep_start``) and each design, the sweep runs a ladder of
fixed-rate open-loop cells — each an ordinary run folder, so every report works on it —
doubling from the start rate (or ``--rates``), and stops a design's ladder past
saturation; then it narrows the bracket between the last good step and the first bad
one (``--refine`` steps).  The rules — within the bound or not, the knee, what gave out
first — are :mod:`loadtest.report.rules.knee`'s.

Cells run exactly as ``socklab compare`` runs them (:mod:`loadtest.matrix.cells`): in a private
network namespace each when root; Ctrl-C, SIGTERM and SIGHUP stop the current cell, keep
the finished steps and build the page from them.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.declare.commands import COMMANDS, SWEEP_DESIGNS, output_folder
from loadtest.declare.scenarios import DEFAULT_SWEEP, SCENARIOS, Scenario
from loadtest.matrix.cells import MAX_LOAD_PROCESSES, Cell, CellRunner, result_line
from loadtest.matrix.compare import over_caps
from loadtest.report.load import traits_of
from loadtest.report.rules.knee import Ladder, Step, judge, knee_line, ladder_rates, what_gave_out
from loadtest.report.rules.summary import load_processes_would_help
from loadtest.report.sweep_page import build_sweep

SWEEP_USERS = 10


def main(args: Any) -> int:
    console = Console(highlight=False, soft_wrap=True)
    out = output_folder(args.out, COMMANDS["sweep"].folder)
    ladders: list[Ladder] = []
    cpus = os.cpu_count() or 1
    with CellRunner(out, args, console) as runner:
        for scenario in args.scenario:
            for design in args.designs:
                ladder = Ladder(scenario, design)
                ladders.append(ladder)
                run_ladder(ladder, args, out, runner, console, cpus)
    done = [s.cell.folder for ladder in ladders for s in ladder.steps if s.row is not None]
    if not done:
        console.print("no step finished: nothing to report")
        return runner.stopped_by or 1
    page = build_sweep(ladders, out)
    for ladder in ladders:
        console.print(knee_line(ladder))
    console.print(f"sweep report: {page.resolve()}")
    if runner.interrupted:
        console.print(f"interrupted ({signal.Signals(runner.interrupted[0]).name}): kept {len(done)} steps")
        return runner.stopped_by
    troubled = [s.cell.name for ladder in ladders for s in ladder.steps if s.outcome_clean is False]
    if troubled:
        console.print(f"steps that did not run cleanly: {', '.join(troubled)}")
        return 1
    return 0


def run_ladder(ladder: Ladder, args: Any, out: Path, runner: CellRunner, console: Console, cpus: int) -> None:
    """Climb until past saturation, then narrow the bracket; set the knee and what gave out."""
    # Every arrival a connection of its own: with persistent connections a one-at-a-time server would
    # serve one user and starve the rest, and the sweep would measure how many users it starves.
    scenario = replace(SCENARIOS[ladder.scenario], user_class="ConnectPerRequestUser")
    start = scenario.sweep_start or 100.0
    rates = list(args.rates) if args.rates else ladder_rates(start, args.max_rate)
    good: Step | None = None
    bad: Step | None = None

    def step(rate: float) -> Step:
        s = run_step(ladder, scenario, rate, args, out, runner, console)
        if more_processes_would_help(s, ladder, args, cpus):
            # One Locust process gave out before the server: a connection costs it ~70 µs of CPU, nearly all
            # in the kernel's connect() and close() (benchmarks.loadgen_cost: 0.9 of a minimal loop), so one
            # process tops out near 14,000 connections/s.  Run this rate and the rest of the ladder again
            # with a Locust process per core, so the server (or the machine) gives out first, if anything.
            ladder.processes = min(cpus, MAX_LOAD_PROCESSES)
            console.print(
                f"{ladder.scenario}/{ladder.design}: one load process gave out at "
                f"{(s.row or {}).get('rps', 0):,.0f} req/s; again with --processes {ladder.processes}"
            )
            ladder.steps.remove(s)
            s = run_step(ladder, scenario, rate, args, out, runner, console)
        return s

    for rate in rates:
        s = step(rate)
        if s.ok:
            good = s
        else:
            bad = s
            break
    if bad is not None and good is not None and not bad.server_died and bad.row is not None:
        low, high = good.rate, bad.rate
        for _ in range(args.refine):
            mid = round((low + high) / 2, 1)
            s = step(mid)
            if s.ok:
                good, low = s, mid
            elif s.row is not None:
                bad, high = s, mid
            else:
                break
    settle(ladder, good, bad, rates[-1], cpus)


def run_step(
    ladder: Ladder, scenario: Scenario, rate: float, args: Any, out: Path, runner: CellRunner, console: Console
) -> Step:
    """One rung: a cell at this offered rate, added to the ladder, judged against the bound."""
    many = f"-p{ladder.processes}" if ladder.processes else ""
    folder = out / f"{ladder.scenario}-{ladder.design}-r{rate:g}{many}"
    options = {"arrival-rate": rate, **({"processes": ladder.processes} if ladder.processes else {})}
    cell = Cell(scenario, ladder.design, args.users or SWEEP_USERS, folder, options=options)
    s = Step(cell, rate)
    ladder.steps.append(s)
    outcome = runner.run(cell)
    s.outcome_clean = outcome.clean
    if outcome.row is not None and outcome.run is not None:
        s.row, s.traits = outcome.row, traits_of(outcome.run)
        s.workers = (outcome.run.info.get("server") or {}).get("workers")
        s.verdict = "server died" if outcome.server_died else judge(s.row, rate, args.slo_p99_ms)
        s.server_died = outcome.server_died
        console.print(f"{result_line(outcome)} · offered {rate:,.0f} · {s.verdict}")
    else:
        s.verdict = outcome.note or outcome.status
        console.print(f"{cell.name} {outcome.status.upper()}: {outcome.note}")
    return s


def settle(ladder: Ladder, good: Step | None, bad: Step | None, top: float, cpus: int) -> None:
    """The ladder's knee (its last good rate) and what gave out at the first bad step."""
    ladder.knee = good.rate if good else None
    if bad is None:
        ladder.gave_out = f"nothing within the ladder (up to {top:,.0f} req/s)"
    elif bad.server_died or bad.row is None:
        ladder.gave_out = f"the server: {bad.verdict}"
    else:
        ladder.gave_out = what_gave_out(bad.row, bad.traits, bad.workers, bad.verdict, cpus)


def more_processes_would_help(s: Step, ladder: Ladder, args: Any, cpus: int) -> bool:
    """The step failed because its one Locust process was out of CPU, and there are cores to add."""
    return (
        not s.ok
        and s.row is not None
        and not ladder.processes
        and not getattr(args, "processes", 0)
        and load_processes_would_help(s.row, cpus)
    )


def validate(args: Any) -> str | None:
    if args.designs is None:
        args.designs = list(SWEEP_DESIGNS)
    if not args.scenario:
        args.scenario = list(DEFAULT_SWEEP)
    return over_caps(args)
