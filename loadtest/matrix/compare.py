"""``socklab compare``: a matrix of designs × loads × scenarios, one isolated cell at a time.

The scenarios are :mod:`loadtest.declare.scenarios`; a cell is run by :mod:`loadtest.matrix.cells` (the same runner
``socklab sweep`` uses).  At the end, or after Ctrl-C with the cells finished so far, the
comparison is built from the cells' folders.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from loadtest.declare import options as opts
from loadtest.declare.commands import COMMANDS, output_folder
from loadtest.declare.scenarios import QUICK, SCENARIOS
from loadtest.matrix import expect
from loadtest.matrix.cells import CELL_OVERHEAD_S, MAX_LOAD_PROCESSES, Cell, CellRunner, Outcome, result_line
from loadtest.report import build_compare
from loadtest.report.rules import answer as answers
from loadtest.report.rules import checks
from loadtest.report.rules.summary import load_processes_would_help


def plan_quick(out: Path) -> list[Cell]:
    """The default matrix: each lesson's designs at its loads (loadtest.declare.scenarios.QUICK)."""
    return [
        Cell(SCENARIOS[lesson.scenario], design, n, out / f"{lesson.scenario}-{design}-u{n}")
        for lesson in QUICK
        for n in lesson.users
        for design in lesson.designs
    ]


def plan(
    designs: list[str],
    users: list[int] | None,
    scenarios: list[str],
    out: Path,
    commands: dict[str, str] | None = None,
) -> list[Cell]:
    """Every cell, in order; `commands` adds --server-cmd servers (NAME → COMMAND) beside the designs."""
    servers = [(v, "") for v in designs] + [(name, f"{name}={cmd}") for name, cmd in (commands or {}).items()]
    cells = []
    for name in scenarios:
        scenario = SCENARIOS[name]
        for n in users or scenario.users:
            for design, server_cmd in servers:
                cells.append(Cell(scenario, design, n, out / f"{name}-{design}-u{n}", server_cmd))
    return cells


def over_caps(args: Any) -> str | None:
    """A value that the cells' servers would refuse on every request, checked before any cell runs."""
    for name in args.scenario:
        merged = {o.dest: o.default for o in opts.OPTIONS}
        merged.update({k.replace("-", "_"): v for k, v in SCENARIOS[name].options.items()})
        merged.update({k.replace("-", "_"): v for k, v in opts.overrides(args).items()})
        problem = opts.over_server_caps(SimpleNamespace(**merged))
        if problem:
            return problem
    return None


def cells_of(args: Any, out: Path) -> list[Cell]:
    if getattr(args, "quick", False):
        return plan_quick(out)
    return plan(args.designs, args.users, args.scenario, out, dict(args.server_cmd or []))


def main(args: Any) -> int:
    quiet = bool(getattr(args, "quiet", False))
    # Piped or logged, rich would assume 80 columns and fold the ranked tables: give them room.
    console = Console(highlight=False, soft_wrap=True, quiet=quiet, width=None if sys.stdout.isatty() else 160)
    out = output_folder(args.out, COMMANDS["compare"].folder)
    cells = cells_of(args, out)
    per_cell = args.warmup + args.duration + CELL_OVERHEAD_S
    outcomes: list[Outcome] = []  # filled as the cells run: an interrupted matrix keeps those finished
    scenarios = list(dict.fromkeys(c.scenario.name for c in cells))
    designs = list(dict.fromkeys(c.design for c in cells))
    with CellRunner(out, args, console) as runner:
        console.print(
            f"socklab compare: {len(cells)} cells ({', '.join(scenarios)} × {', '.join(designs)}"
            + (", the default lessons; --full for every design" if getattr(args, "quick", False) else "")
            + f"), ~{len(cells) * per_cell / 60:.1f} min; output in {out}"
        )
        run_cells(cells, runner, console, quiet, outcomes)
    finished = [o for o in outcomes if o.status == "done"]
    if not finished:
        console.print("no cell finished: nothing to compare")
        return runner.stopped_by or 1
    summary, page = build_compare(
        [o.cell.folder for o in finished],
        out,
        loaded=[(o.run, o.row) for o in finished if o.run is not None and o.row is not None],
    )
    print_answers(console, finished)
    console.print(f"summary: {summary}")
    print(f"compare report: {page.resolve()}", flush=True)  # even with --quiet: what a script needs
    failed = expect.check(
        args.expectations,
        [o.row for o in finished if o.row is not None],
        [(c.scenario.name, c.design, c.users) for c in cells],
    )
    for line in failed:
        print(line, file=sys.stderr)
    contradictions = self_check_failures(finished)
    for line in contradictions:
        print(line, file=sys.stderr)
    if runner.interrupted:
        console.print(
            f"interrupted: kept {len(finished)} of {len(cells)} cells ({signal.Signals(runner.interrupted[0]).name})"
        )
        return runner.stopped_by
    if contradictions:
        return SELF_CHECK_FAILED
    if failed:
        return EXPECTATIONS_FAILED
    troubled = [o.cell.name for o in outcomes if not o.clean]
    if troubled:
        console.print(f"cells that did not run cleanly: {', '.join(troubled)}")
        return 1
    return 0


def run_cells(cells: list[Cell], runner: CellRunner, console: Console, quiet: bool, outcomes: list[Outcome]) -> None:
    """Each cell in turn, a line each, under a progress bar, its outcome added to `outcomes` as it ends (a stop
    signal raises out of here, and the caller keeps what was added)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task("starting", total=len(cells))
        for cell in cells:
            progress.update(task, description=cell.name)
            outcome = runner.run(cell)
            processes = more_load_processes(outcome, runner.args)
            if processes:
                # Its one Locust process gave out before the server or the machine did: the rate it measured is the
                # load generator's. Again with a load process per core, so the server saturates, or the machine.
                first = cell.folder.with_name(f"{cell.folder.name}-1-process")  # kept: the re-run's premise, checkable
                shutil.rmtree(first, ignore_errors=True)
                cell.folder.rename(first)
                row, cpus = outcome.row or {}, (outcome.run.info.get("cpus") if outcome.run else None) or 1
                progress.console.print(
                    f"{result_line(outcome)}\n  {cell.name}: its one load process gave out (median "
                    f"{row.get('loadgen_median_cpu_percent', 0):.0f}% of a core) while the machine was not full "
                    f"({row.get('machine_cpu_percent', 0):.0f}% of {100 * cpus}%); again with --processes "
                    f"{processes} (the first run is kept in {first.name})"
                )
                cell.options["processes"] = processes
                outcome = runner.run(cell)
            outcomes.append(outcome)
            progress.console.print(result_line(outcome))
            progress.advance(task)


def more_load_processes(outcome: Outcome, args: Any) -> int:
    """How many load processes a client-bound cell should run again with (0: it is not, or cannot be helped): its
    one Locust process at a core while the machine was not full (summary.load_processes_would_help), and no
    --processes given."""
    row, cpus = outcome.row, int((outcome.run.info.get("cpus") if outcome.run else 0) or 0)
    if (
        outcome.status != "done"
        or row is None
        or getattr(args, "processes", 0)
        or outcome.cell.options.get("processes")
    ):
        return 0
    return min(cpus, MAX_LOAD_PROCESSES) if load_processes_would_help(row, cpus) else 0


EXPECTATIONS_FAILED = 3
SELF_CHECK_FAILED = 4  # a cell's figures contradict each other or theory (loadtest.report.rules.checks)


def self_check_failures(finished: list[Outcome]) -> list[str]:
    """Each failed self-check of every cell, as written to its checks.csv."""
    out = []
    for outcome in finished:
        path = outcome.cell.folder / checks.CHECKS_FILE
        if path.exists():
            frame = pd.read_csv(path)
            out.extend(
                f"{outcome.cell.name}: self-check failed: {r.check} ({r.figures})"
                for r in frame.itertuples()
                if r.status == "fail"
            )
    return out


def print_answers(console: Console, finished: list[Outcome]) -> None:
    """Each scenario's designs ranked, and its headlines: the page's first screen, in the terminal."""
    groups: dict[str, list[answers.Cell]] = {}
    for o in finished:
        if o.row is not None and o.run is not None:
            groups.setdefault(o.cell.scenario.name, []).append(answers.Cell(o.row, o.run))
    cpus = os.cpu_count()
    if groups:
        console.print(f"ranking: {answers.RULE}")
    for name, cells in groups.items():
        a = answers.answer(name, cells, cpus)
        table = Table(title=f"{name}: {a.question}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in (
            "#",
            "design",
            f"req/s at {a.users}u",
            "est.",
            *a.latency_heads,
            "served",
            "time went to",
            "verdict",
        ):
            table.add_column(
                column, justify="left" if column in ("design", "time went to", "verdict") else "right", overflow="fold"
            )
        for s in a.standings:
            went = time_went_to(s.shares)
            est = f"≈ {s.estimate:,.0f}" if s.estimate is not None else "not CPU-bound" if s.no_estimate else ""
            table.add_row(
                str(s.rank),
                s.design,
                f"{s.rps:,.0f}",
                est,
                s.p50,
                s.p99,
                s.served,
                went,
                "; ".join([*s.badges, *([s.waiting] if s.waiting else [])]),
            )
        console.print(table)
        console.print(f"  {a.ranking}")
        for line in a.headlines:
            console.print(f"  • {line}")
        console.print()


def time_went_to(shares: dict[str, float]) -> str:
    """The stage most of the users' time went to; when that is time with no request in flight (a user with
    nothing left to send, or the load generator's own), the stage after it too: where the waiting went."""
    if not shares:
        return "not measured"
    ranked = sorted(shares, key=shares.get, reverse=True)  # type: ignore[arg-type]
    shown = ranked[:2] if ranked[0] == "load_generator" and len(ranked) > 1 and shares[ranked[1]] > 0 else ranked[:1]
    return ", ".join(f"{answers.STAGE_WORDS[stage]} {shares[stage]:.0%}" for stage in shown)
