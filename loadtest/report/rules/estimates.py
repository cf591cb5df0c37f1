"""When a server's CPU can stand in for its rate: the bounds on a measured rate, and the server-CPU estimate.

A measured rate is the server's only while neither the load generator (client-bound) nor the shared machine
(machine-bound) set it.  Where one did, what the server could serve is estimated from its CPU per request —
meaningful only for a server that was CPU-bound (``ESTIMATE_CPU_SHARE`` of the CPU it could use).  The rule
that ranks with these is ``loadtest.report.rules.answer``'s.
"""

from __future__ import annotations

from typing import Any

from loadtest.report.rules.findings import num
from loadtest.report.rules.summary import load_bound

ESTIMATE_CPU_SHARE = 0.75  # an estimate means something only for a server at >= 75 % of the CPU it could use
NO_ESTIMATE = "not CPU-bound: no estimate"


def server_cpu_percent(row: dict[str, Any]) -> float | None:
    cpu_us, rps = num(row, "server_cpu_us_per_request"), num(row, "rps")
    return cpu_us * rps / 1e4 if cpu_us is not None and rps is not None else None


def bounds(row: dict[str, Any], cpus: int | None) -> list[str]:
    """Every way the row's measured rate is not the server's: "client-bound", "machine-bound", both or none.

    ``summary.load_bound`` is the one rule for each, but it names only the first that holds, so a cell both
    client-bound and machine-bound (echo/selectors at 181.6 % of 2 cores, its load generator ≥ 90 %) read as
    client-bound alone while its neighbour at 180.5 % read machine-bound: the machine is asked again here
    with the client flag set aside."""
    found = (load_bound(row, cpus), load_bound({**row, "client_bound": False}, cpus))
    return [b for b in dict.fromkeys(found) if b]


def usable_cpu(row: dict[str, Any], traits: dict[str, bool], cpus: int | None) -> float | None:
    """The CPU the server could have used, % of one core: one core for one interpreter (one GIL), every core
    for processes, less what the load generator used (machine_cpu_percent less the server's own)."""
    server = server_cpu_percent(row)
    if server is None:
        return None
    usable = 100.0 * (cpus or 1) if traits.get("uses_processes") else 100.0
    machine = num(row, "machine_cpu_percent")
    if machine is not None and cpus:
        left = 100.0 * cpus - max(machine - server, 0.0)
        usable = min(usable, max(left, server))  # a median beside a mean: never less than what it did use
    return usable


def cpu_share(row: dict[str, Any], traits: dict[str, bool], cpus: int | None) -> float | None:
    """Server CPU ÷ the CPU it could use (usable_cpu): 1.0 is CPU-bound; None without a CPU figure."""
    server, usable = server_cpu_percent(row), usable_cpu(row, traits, cpus)
    if server is None or usable is None:
        return None
    return server / usable if usable > 0 else 0.0


def estimate_of(row: dict[str, Any], traits: dict[str, bool], cpus: int | None) -> float | None:
    """What the server could serve CPU-bound, its cost linear, on the cores it can use: one core's estimate
    (server_capacity_rps_per_core, 1e6 ÷ CPU µs per request) for one interpreter, × every core for processes
    — a rate, to stand in for a measured rate (preforked on cpu: 491 a core, 919 measured on 2 cores)."""
    per_core = num(row, "server_capacity_rps_per_core")
    if per_core is None:
        return None
    return per_core * (cpus or 1) if traits.get("uses_processes") else per_core
