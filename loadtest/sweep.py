"""``socklab sweep``: latency against offered load for every design, and where each one breaks.

Closed-loop users cannot say how much load a design takes before its latency
explodes: they slow down when the server does.  Open-loop steps can (Gil Tene's
latency-against-load method, wrk2's ``-R``).  For each scenario and variant the
sweep runs a ladder of fixed-rate open-loop cells — each an ordinary run folder,
so every report works on it — doubling from a start rate (or ``--rates``), and
stops a variant's ladder past saturation: achieved < 95 % of offered, p99 from
the intended start over ``--slo-p99-ms``, or failures.  Then it narrows the
bracket between the last good step and the first bad one (``--refine`` steps).

The **knee** of a design is the highest offered rate it sustained within the
bound.  What gave out first at the step past it is read from that step's data:
the load generator (then the knee is unknown — "not reached"), the accept
queue, server CPU at one core (the GIL) or at every core, a one-at-a-time or
pooled design's own limit, or latency alone.

Cells run one after another, in a private network namespace each when root,
exactly as ``socklab compare`` runs them; Ctrl-C, SIGTERM and SIGHUP stop the
current cell, keep the finished steps and build the page from them.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.compare import (
    SCENARIOS,
    STOP_SIGNALS,
    Cell,
    Interrupted,
    cell_command,
    describe,
    over_caps,
    run_cell,
)
from loadtest.netns import can_isolate
from loadtest.report import load_bound, load_run, summarize
from loadtest.report.load import traits_of

ACHIEVED_FRACTION = 0.95
EDGE_REQUESTS = 2
SWEEP_SCENARIOS = ("io-wait", "cpu", "arrivals")
DEFAULT_SWEEP = ("io-wait",)
DEFAULT_VARIANTS = ("blocking", "threaded", "selectors")  # the lesson's three; --variants for the rest
START_RATES = {"io-wait": 25.0, "cpu": 100.0, "arrivals": 250.0}  # req/s: the ladder's first step
SWEEP_USERS = 10


@dataclass
class Step:
    cell: Cell
    rate: float
    row: dict[str, Any] | None = None
    verdict: str = ""  # "ok", or why the step is past saturation

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


@dataclass
class Ladder:
    scenario: str
    variant: str
    steps: list[Step] = field(default_factory=list)
    knee: float | None = None
    gave_out: str = ""


def users_for(rate: float, fixed: int | None) -> int:
    # Each arrival is a connection of its own, on a greenlet of its own: users only share the schedule.
    return fixed or SWEEP_USERS


def judge(row: dict[str, Any], rate: float, slo_ms: float) -> str:
    """'ok', or the reason the step is past saturation."""
    achieved, seconds = row.get("rps") or 0.0, float(row.get("duration_s") or 0.0)
    # At low rates one request in flight at either edge of the window is several per cent of the
    # count: a shortfall of EDGE_REQUESTS is counting, not saturation.
    if achieved * seconds < ACHIEVED_FRACTION * rate * seconds - EDGE_REQUESTS:
        return f"achieved {achieved:,.0f} of {rate:,.0f} req/s"
    p99 = row.get("latency_p99_ms")
    if isinstance(p99, float) and p99 == p99 and p99 > slo_ms:
        return f"p99 {p99:,.1f} ms over the {slo_ms:g} ms bound"
    if row.get("failures"):
        return f"{row['failures']:,} failures ({row['failure_classes']})"
    return "ok"


def what_gave_out(step: Step, cpus: int) -> str:
    """Read off the first step past the knee: what ran out first."""
    row = step.row or {}
    run = load_run(step.cell.folder)
    traits = traits_of(run)
    bound = load_bound(row, cpus)
    if bound == "client-bound":
        return f"the load generator (the busiest Locust process at {row['loadgen_median_cpu_percent']:.0f}% of a core)"
    overflows = row.get("listen_overflows")
    if isinstance(overflows, int) and overflows > 0:
        return (f"the accept queue: {overflows:,} packets dropped at a full accept queue "
                f"(backlog {row.get('backlog')}, peak depth {row.get('peak_accept_queue')})")  # fmt: skip
    rps, cpu_us = row.get("rps") or 0.0, row.get("server_cpu_us_per_request")
    server_cpu = cpu_us * rps / 1e4 if isinstance(cpu_us, float) and cpu_us == cpu_us else 0.0
    if traits.get("uses_processes") and server_cpu >= 85 * cpus:
        return f"server CPU on every core ({server_cpu:.0f}% of one core over {cpus} cores)"
    if not traits.get("uses_processes") and server_cpu >= 85:
        return f"server CPU at {server_cpu:.0f}% of one core: one interpreter, one GIL"
    if bound == "machine-bound":
        return f"the machine's CPU: server and load generator together at {row['machine_cpu_percent']:.0f}%"
    if traits.get("serves_one_at_a_time"):
        return "serving one connection at a time: its capacity is 1 ÷ the service time"
    if traits.get("pooled"):
        workers = (run.info.get("server") or {}).get("workers")
        return f"its pool of {workers} workers, every one busy: arrivals queue behind them"
    return f"latency ({step.verdict}) with CPU to spare"


def ladder_rates(start: float, max_rate: float) -> list[float]:
    rates, rate = [], start
    while rate <= max_rate:
        rates.append(rate)
        rate *= 2
    return rates


def main(args: Any) -> int:
    console = Console(highlight=False, soft_wrap=True)
    out: Path = args.out or Path("reports") / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    isolate = not args.no_isolate and can_isolate()[0]
    if not isolate:
        console.print("note: cells share the host's kernel counters (no private namespace), marked 'shared'")
    interrupted: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: interrupted.append(signum)) for sig in STOP_SIGNALS}
    ladders: list[Ladder] = []
    cpus = _cpus()
    try:
        for scenario in args.scenario:
            for variant in args.variants:
                ladder = Ladder(scenario, variant)
                ladders.append(ladder)
                run_ladder(ladder, args, out, isolate, interrupted, console, cpus)
                if interrupted:
                    raise Interrupted
    except Interrupted:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    from loadtest.report.sweep import build_sweep

    done = [s.cell.folder for ladder in ladders for s in ladder.steps if s.row is not None]
    if not done:
        console.print("no step finished: nothing to report")
        return 128 + interrupted[0] if interrupted else 1
    page = build_sweep(ladders, out)
    for ladder in ladders:
        console.print(knee_line(ladder))
    console.print(f"sweep report: {page.resolve()}")
    if interrupted:
        console.print(f"interrupted ({signal.Signals(interrupted[0]).name}): kept {len(done)} steps")
        return 128 + interrupted[0]
    troubled = [
        s.cell.name for ladder in ladders for s in ladder.steps if s.cell.status != "done" or s.cell.server_died
    ]
    if troubled:
        console.print(f"steps that did not run cleanly: {', '.join(troubled)}")
        return 1
    return 0


def run_ladder(ladder: Ladder, args: Any, out: Path, isolate: bool, interrupted: list[int], console: Console,
               cpus: int) -> None:  # fmt: skip
    """Climb until past saturation, then narrow the bracket; set the knee and what gave out."""
    # Every arrival a connection of its own: with persistent connections a one-at-a-time server would
    # serve one user and starve the rest, and the sweep would measure how many users it starves.
    scenario = replace(SCENARIOS[ladder.scenario], user_class="ConnectPerRequestUser")
    rates = list(args.rates) if args.rates else ladder_rates(START_RATES[ladder.scenario], args.max_rate)
    good: Step | None = None
    bad: Step | None = None

    def step(rate: float) -> Step:
        users = users_for(rate, args.users)
        folder = out / f"{ladder.scenario}-{ladder.variant}-r{rate:g}"
        cell = Cell(scenario, ladder.variant, users, folder, options={"arrival-rate": rate})
        s = Step(cell, rate)
        ladder.steps.append(s)
        run_cell(cell, cell_command(cell, args, isolate), args.warmup + args.duration + 90, interrupted)
        if cell.status == "done":
            s.row = summarize(load_run(folder))
            line = describe(cell)  # also marks a server that died
            s.verdict = "server died" if cell.server_died else judge(s.row, rate, args.slo_p99_ms)
            console.print(f"{line} · offered {rate:,.0f} · {s.verdict}")
        else:
            s.verdict = cell.note or cell.status
            console.print(f"{cell.name} {cell.status.upper()}: {cell.note}")
        return s

    for rate in rates:
        s = step(rate)
        if interrupted:
            return
        if s.ok:
            good = s
        else:
            bad = s
            break
    if bad is not None and good is not None and not bad.cell.server_died and bad.row is not None:
        low, high = good.rate, bad.rate
        for _ in range(args.refine):
            mid = round((low + high) / 2, 1)
            s = step(mid)
            if interrupted:
                return
            if s.ok:
                good, low = s, mid
            elif s.row is not None:
                bad, high = s, mid
            else:
                break
    ladder.knee = good.rate if good else None
    if bad is None:
        ladder.gave_out = f"nothing within the ladder (up to {rates[-1]:,.0f} req/s)"
    elif bad.cell.server_died or bad.row is None:
        ladder.gave_out = f"the server: {bad.verdict}"
    else:
        ladder.gave_out = what_gave_out(bad, cpus)


def knee_line(ladder: Ladder) -> str:
    name = f"{ladder.scenario}/{ladder.variant}"
    if ladder.knee is None:
        first = ladder.steps[0].verdict if ladder.steps else "-"
        return f"{name:32} no step within the bound (first step: {first}); what gave out: {ladder.gave_out}"
    if ladder.gave_out.startswith("the load generator"):
        achieved = max((s.row or {}).get("rps") or 0 for s in ladder.steps)
        return (f"{name:32} knee not reached: the load generator saturated at {achieved:,.0f} req/s "
                f"(sustained {ladder.knee:,.0f} req/s within the bound)")  # fmt: skip
    return f"{name:32} knee {ladder.knee:,.0f} req/s; past it, what gave out first: {ladder.gave_out}"


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def rates_list(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or min(values) <= 0 or values != sorted(values):
        raise ValueError
    return values


rates_list.__name__ = "rates list (increasing, > 0, e.g. 100,200,400)"


def validate(args: Any) -> str | None:
    if args.variants is None:
        args.variants = list(DEFAULT_VARIANTS)
    if not args.scenario:
        args.scenario = list(DEFAULT_SWEEP)
    return over_caps(args)
