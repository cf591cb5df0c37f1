"""``socklab lab``: the experiments of :mod:`loadtest.declare.experiments`, each run and given a verdict.

    socklab lab --list              name, question, source
    socklab lab backlog             one experiment (its arms: one isolated cell each)
    socklab lab all                 every one, one after another

Each arm is a cell run exactly as ``socklab compare`` runs one (:mod:`loadtest.matrix.cells`): a headless
Locust run in a private network namespace of its own, where its sysctls are set (and nowhere else).
The page (compare.html in the output folder) opens with each experiment's claim, its source's
numbers beside the measurement, and a verdict per claim: holds here, does not hold here, differs, or
not available here (a kernel without the feature, or no private namespace for a sysctl).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.declare.commands import COMMANDS, output_folder
from loadtest.declare.experiments import EXPERIMENTS, MID_WINDOW, STARTUP_S, Arm, Experiment, unavailable
from loadtest.matrix.cells import Cell, CellRunner, Outcome, result_line

CELL_OVERHEAD_S = 2.0


def folder_name(experiment: str, arm: Arm) -> str:
    return f"{experiment}-" + re.sub(r"[^A-Za-z0-9=.]+", "_", arm.label).strip("_")


Skipped = dict[tuple[str, str], str]  # (experiment, arm) → why it cannot run here


def plan(names: list[str], out: Path, isolated: bool, quick: bool = False) -> tuple[list[Cell], Skipped]:
    """The cells of these experiments (with `quick`, each one's quick arms), and the arms that cannot run here."""
    cells, skipped = [], {}
    for name in names:
        experiment = EXPERIMENTS[name]
        for arm in experiment.arms:
            if quick and experiment.quick_arms and arm.label not in experiment.quick_arms:
                continue
            why = unavailable(arm, isolated)
            if why:
                skipped[(name, arm.label)] = why
                continue
            cells.append(
                Cell(
                    experiment,
                    arm.design,
                    arm.users,
                    out / folder_name(name, arm),
                    options={**arm.options, "arm": arm.label},
                    server_cmd=arm.server_cmd,
                )
            )
    return cells, skipped


def experiment_of(cell: Cell) -> Experiment:
    """The experiment a cell of the lab is an arm of."""
    return EXPERIMENTS[cell.scenario.name]


def listing() -> str:
    width = max(map(len, EXPERIMENTS))
    return "\n".join(f"{e.name:{width}}  {e.question}\n{'':{width}}  source: {e.source}" for e in EXPERIMENTS.values())


def main(args: Any) -> int:
    from loadtest.report import build_compare
    from loadtest.report.rules.claims import missing

    console = Console(highlight=False, soft_wrap=True)
    if args.list:
        console.print(listing())
        return 0
    names = list(EXPERIMENTS) if "all" in args.names else list(dict.fromkeys(args.names))
    out = output_folder(args.out, COMMANDS["lab"].folder)
    outcomes: list[Outcome] = []
    settings = argparse.Namespace(no_isolate=False, processes=0, warmup=0.0, duration=0.0)
    with CellRunner(out, settings, console) as runner:
        cells, skipped = plan(names, out, runner.isolate, args.quick)

        def window(cell: Cell) -> float:
            experiment = experiment_of(cell)
            return args.seconds or (experiment.quick_seconds if args.quick else experiment.seconds)

        seconds = sum(window(c) + experiment_of(c).warmup + CELL_OVERHEAD_S for c in cells)
        console.print(f"socklab lab: {', '.join(names)} — {len(cells)} cells, ~{seconds / 60:.1f} min; output in {out}")
        for (name, label), why in skipped.items():
            console.print(f"{name}/{label:28} not available here: {why}")
        for cell in cells:
            settings.warmup, settings.duration = experiment_of(cell).warmup, window(cell)
            middle = STARTUP_S + settings.warmup + settings.duration / 2  # from the server's start
            for name, value in {**cell.scenario.options, **cell.options}.items():
                if value == MID_WINDOW:
                    cell.options[name] = round(middle, 2)
            outcome = runner.run(cell)
            outcomes.append(outcome)
            console.print(result_line(outcome).replace(cell.name, f"{cell.scenario.name}/{cell.options['arm']}", 1))
    finished = [o for o in outcomes if o.status == "done"]
    if not finished:
        console.print("no cell finished: nothing to judge")
        return runner.stopped_by or 1
    _, page = build_compare(
        [o.cell.folder for o in finished],
        out,
        title="socklab lab",
        loaded=[(o.run, o.row) for o in finished if o.run is not None and o.row is not None],
    )
    judged = json.loads((out / "verdicts.json").read_text()) if (out / "verdicts.json").exists() else {}
    for name in names:
        console.print(f"\n[bold]{name}[/bold]: {EXPERIMENTS[name].question}")
        for line in (judged.get(name) or {}).get("verdicts") or missing(EXPERIMENTS[name], {})[0]:
            console.print(f"  • {line}")
    console.print(f"\nlab report: {page.resolve()}")
    if runner.interrupted:
        return runner.stopped_by
    return 0 if all(o.clean or o.status == "done" for o in outcomes) else 1


def check_names(names: list[str]) -> str | None:
    unknown = [n for n in names if n != "all" and n not in EXPERIMENTS]
    if unknown:
        return f"no experiment {unknown[0]!r}; one of: {', '.join(EXPERIMENTS)}, or all"
    return None
