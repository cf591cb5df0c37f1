"""The sweep's rules, pure: when a step is past saturation, what gave out first, and the knee's line.

A step is a fixed-rate open-loop cell.  It is within the bound when it achieved ≥ 95 % of the
offered rate (less two requests: the edges of a short window), its p99 from the intended start is
within the bound, and nothing failed.  The knee of a design is the highest offered rate it
sustained so; what gave out first is read from the first step past it.  ``loadtest.matrix.sweep`` runs the
ladders, ``loadtest.report.sweep_page`` draws them; both read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loadtest.report.rules.summary import SERVER_CPU_FULL, load_bound

if TYPE_CHECKING:
    from loadtest.matrix.cells import Cell

ACHIEVED_FRACTION = 0.95
EDGE_REQUESTS = 2


@dataclass
class Step:
    cell: Cell
    rate: float
    row: dict[str, Any] | None = None
    verdict: str = ""  # "ok", or why the step is past saturation
    traits: dict[str, bool] = field(default_factory=dict)  # the server's, as it announced them
    workers: int | None = None
    server_died: bool = False
    outcome_clean: bool | None = None  # None until it ran

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


@dataclass
class Ladder:
    scenario: str
    design: str
    steps: list[Step] = field(default_factory=list)
    knee: float | None = None
    gave_out: str = ""
    processes: int = 0  # > 0: its steps run this many Locust processes (the load generator gave out in one)


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


def what_gave_out(row: dict[str, Any], traits: dict[str, bool], workers: int | None, verdict: str, cpus: int) -> str:
    """Read off the first step past the knee: what ran out first."""
    bound = load_bound(row, cpus)
    if bound == "client-bound":
        return f"the load generator (the busiest Locust process at {row['loadgen_median_cpu_percent']:.0f}% of a core)"
    overflows = row.get("listen_overflows")
    if isinstance(overflows, int) and overflows > 0:
        return (
            f"the accept queue: {overflows:,} packets dropped at a full accept queue "
            f"(backlog {row.get('backlog')}, peak depth {row.get('peak_accept_queue')})"
        )
    rps, cpu_us = row.get("rps") or 0.0, row.get("server_cpu_us_per_request")
    server_cpu = cpu_us * rps / 1e4 if isinstance(cpu_us, float) and cpu_us == cpu_us else 0.0
    if traits.get("uses_processes") and server_cpu >= SERVER_CPU_FULL * cpus:
        return f"server CPU on every core ({server_cpu:.0f}% of one core over {cpus} cores)"
    if not traits.get("uses_processes") and server_cpu >= SERVER_CPU_FULL:
        # one thread cannot pass a core; threads of one interpreter take turns at its GIL (unknown: as threads)
        single = traits and not traits.get("uses_threads")
        return f"server CPU at {server_cpu:.0f}% of one core: " + (
            "one thread" if single else "one interpreter, one GIL"
        )
    if bound == "machine-bound":
        return f"the machine's CPU: server and load generator together at {row['machine_cpu_percent']:.0f}%"
    if traits.get("serves_one_at_a_time"):
        return "serving one connection at a time: its capacity is 1 ÷ the service time"
    if traits.get("pooled"):
        return f"its pool of {workers} workers, every one busy: arrivals queue behind them"
    return f"latency ({verdict}) with CPU to spare"


def ladder_rates(start: float, max_rate: float) -> list[float]:
    rates, rate = [], start
    while rate <= max_rate:
        rates.append(rate)
        rate *= 2
    return rates


def knee_line(ladder: Ladder) -> str:
    name = f"{ladder.scenario}/{ladder.design}"
    if ladder.knee is None:
        first = ladder.steps[0].verdict if ladder.steps else "-"
        return f"{name:32} no step within the bound (first step: {first}); what gave out: {ladder.gave_out}"
    if ladder.gave_out.startswith("the load generator"):
        achieved = max((s.row or {}).get("rps") or 0 for s in ladder.steps)
        return (
            f"{name:32} knee not reached: the load generator saturated at {achieved:,.0f} req/s "
            f"(sustained {ladder.knee:,.0f} req/s within the bound)"
        )
    return f"{name:32} knee {ladder.knee:,.0f} req/s; past it, what gave out first: {ladder.gave_out}"
