"""The kernel tracer's cost: machine CPU per connection with it and without it, side by side in one run.

    python -m loadtest.hosts.isolate -- python -m benchmarks.tracer_cost [--connections 30000] [--rounds 3]
                                                                          [--clients 2]

Connect-per-request on ``selectors`` at its knee: ``--clients`` processes each open, ECHO once over and
close ``--connections / --clients`` connections back to back (blocking sockets, no gevent: as cheap a
client as Python has), as fast as the machine goes.  Each round runs both sides, in alternating order,
each against a fresh server: without the tracer, and with it (``loadtest.measure.tracer``: its eBPF program,
attached before the load).  For each side, the machine's busy CPU (/proc/stat, every core: the probes
run in the kernel, in whichever process's context the event happens) over the load ÷ connections; for
the tracer, the kernel's own count of the time its BPF programs ran (``kernel.bpf_stats_enabled``,
switched on for the run: ``run_time_ns`` of each program, exact where the machine's busy time is noisy),
its loader's CPU during the load (draining the ring buffer into a file), the events it recorded and lost,
and what stopping it costs: the last drain and pairing the records into connections.  Goal: ≤ 3 µs of
machine CPU a connection, no lost event at the rate reached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from loadtest.matrix.processes import ServerProcess
from loadtest.measure.kernel_pairs import read_records, to_connections
from loadtest.measure.tracer import KernelTracer, netns_inode

GOAL_US = 3.0
CLIENT = r"""
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
frame = struct.pack("!IBII", 9 + 4, 1, 0, 0) + b"ping"
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(frame)
    got = b""
    while len(got) < 9:
        chunk = s.recv(64)
        if not chunk:
            raise SystemExit("closed early")
        got += chunk
    s.close()
"""


def busy_seconds() -> float:
    """Every core's non-idle time since boot (/proc/stat: user … steal, less idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def bpf_run_ns(pid: int) -> tuple[int, int]:
    """Σ run_time_ns and run_cnt of a process's BPF programs (their fdinfo, with bpf_stats enabled)."""
    total = runs = 0
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            fields = dict(line.split(":", 1) for line in fd.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if "prog_type" in fields:
            total, runs = total + int(fields.get("run_time_ns", 0)), runs + int(fields.get("run_cnt", 0))
    return total, runs


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_side(traced: bool, connections: int, clients: int, folder: Path) -> dict[str, float]:
    with ServerProcess.start("selectors", backlog=1024) as server:
        tracer = None
        if traced:
            tracer = KernelTracer.start(server.port, [netns_inode()], folder)
            if not tracer.wait_attached():
                raise SystemExit(f"tracer_cost: {tracer.status}")
        proc = psutil.Process(tracer.proc.pid) if tracer and tracer.proc else None
        tracer_before = sum(proc.cpu_times()[:2]) if proc else 0.0
        each = connections // clients
        cpu0, t0 = busy_seconds(), time.perf_counter()
        loads = [subprocess.Popen([sys.executable, "-c", CLIENT, str(server.port), str(each)]) for _ in range(clients)]
        if any(p.wait() for p in loads):
            raise SystemExit("tracer_cost: a client failed")
        wall, cpu = time.perf_counter() - t0, busy_seconds() - cpu0
        out = {"rate": each * clients / wall, "machine_us": cpu / (each * clients) * 1e6}
        if tracer is not None and proc is not None:
            probes_ns, runs = bpf_run_ns(proc.pid)
            so_far = sum(proc.cpu_times()[:2])  # compiling and attaching, and the load
            during = so_far - tracer_before
            before_stop, mine, stop0 = children_cpu(), own_cpu(), time.perf_counter()
            info = tracer.stop()
            # Draining what is left (the loader, reaped in stop(): its whole CPU less the above), then pairing
            # the records into connections (as the report does, here in this process).
            paired = to_connections(read_records(tracer.raw), server.port, whole=not info.get("lost_events"))
            info["connections"] = len(paired)
            readout = children_cpu() - before_stop - so_far + own_cpu() - mine
            out.update(
                probes_us=probes_ns / 1e3 / (each * clients),
                probe_runs=runs / (each * clients),
                tracer_us_during=during / (each * clients) * 1e6,
                events=info.get("events", 0),
                lost=info.get("lost_events", 0),
                traced=info.get("connections", 0),
                readout_s=time.perf_counter() - stop0,
                readout_cpu_s=max(readout, 0.0),
            )
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    rounds = []
    stats = Path("/proc/sys/kernel/bpf_stats_enabled")
    was = stats.read_text().strip()
    stats.write_text("1")
    try:
        rounds = run_rounds(args)
    finally:
        stats.write_text(was)
    report(rounds)


def run_rounds(args: argparse.Namespace) -> list[dict[str, float]]:
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            sides = (False, True) if r % 2 == 0 else (True, False)
            got = {traced: one_side(traced, args.connections, args.clients, Path(tmp) / f"r{r}") for traced in sides}
            off, on = got[False], got[True]
            row = {"round": r + 1, "without_us": off["machine_us"], "with_us": on["machine_us"], **on}
            row["added_us"], row["ratio"] = on["machine_us"] - off["machine_us"], on["machine_us"] / off["machine_us"]
            rounds.append(row)
            print(
                f"round {r + 1}: without {off['machine_us']:.1f} µs/conn ({off['rate']:,.0f}/s) · with "
                f"{on['machine_us']:.1f} µs/conn ({on['rate']:,.0f}/s) · added {row['added_us']:+.1f} µs "
                f"(×{row['ratio']:.3f}) · BPF programs {on['probes_us']:.2f} µs/conn ({on['probe_runs']:.1f} runs) · "
                f"its loader during the load {on['tracer_us_during']:.2f} µs/conn · "
                f"{on['events']:,} events, {on['lost']:,} lost, {on['traced']:,} connections · stopped and paired in "
                f"{on['readout_s']:.2f} s ({on['readout_cpu_s'] / max(on['traced'], 1) * 1e6:.1f} µs CPU/conn)",
                file=sys.stderr,
            )
    return rounds


def report(rounds: list[dict[str, float]]) -> None:
    added = statistics.median(r["added_us"] for r in rounds)
    probes = statistics.median(r["probes_us"] for r in rounds)
    summary = {
        "added_us_per_connection": round(added, 2),
        "bpf_programs_us_per_connection": round(probes, 2),
        "ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "rate": round(max(r["rate"] for r in rounds)),
        "lost_events": max(r["lost"] for r in rounds),
        "readout_us_per_connection": round(
            statistics.median(r["readout_cpu_s"] / max(r["traced"], 1) * 1e6 for r in rounds), 1
        ),
        "goal_us": GOAL_US,
        "met": max(added, probes) <= GOAL_US and max(r["lost"] for r in rounds) == 0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
