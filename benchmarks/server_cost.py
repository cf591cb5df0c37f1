"""Server cost: requests/s and server CPU µs per request, designs beside stdlib references.

    python -m benchmarks.server_cost [--seconds 3] [--repeat 3] [--csv benchmarks/results/server_cost.csv]
    python -m benchmarks.server_cost --against /tmp/before [--designs blocking,threaded] [--loads persistent]

``--as-run`` keeps each design's connection log, as a socklab run does; the goals (≤ 1.10 of the
standard library's server of the same kind) are judged that way.  The ratio is the median of the
rounds' ratios.

For each server and load, a fresh server process and a separate bare-gevent load
process (benchmarks.loadgen; no locust).  Server CPU per request = Δ(user+sys
CPU of the server process tree) / Δ requests over the same measured window.
Loads: persistent 64 B ECHO over 50 connections (1 for the one-at-a-time
servers, which could serve no more), and connect-per-request over 10.
Rounds interleave the servers so drift on a noisy machine hits all of them
alike; the median of the rounds is reported, with the goal ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.matrix.processes import ServerProcess
from servers import design_class, speaking
from servers.connlog import mark_window

ROOT = Path(__file__).resolve().parent.parent
# glibc serves allocations above its mmap threshold (128 KiB at start, raised dynamically
# by earlier frees) with mmap.  asyncio reads into a fresh 256 KiB buffer, so stock asyncio
# pays mmap + mremap + munmap per read (strace shows it) unless its process happened to
# raise the threshold first.  The pinned run takes that allocator artifact away.
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
# name -> (command to launch, one connection at a time?)
SERVERS: dict[str, tuple[list[str], bool]] = {
    **{
        name: ([sys.executable, "-m", "servers", name, "--port", "0"], design_class(name).serves_one_at_a_time)
        for name in speaking("socklab")  # they load socklab's frames: not the one-shot seed
    },
    "ref:asyncio": ([sys.executable, "-m", "benchmarks.reference_servers", "asyncio", "--port", "0"], False),
    "ref:asyncio+pinned-malloc": (
        [sys.executable, "-m", "benchmarks.reference_servers", "asyncio", "--port", "0"],
        False,
    ),
    "ref:ThreadingTCPServer": (
        [sys.executable, "-m", "benchmarks.reference_servers", "threadingtcpserver", "--port", "0"],
        False,
    ),
    "ref:TCPServer": ([sys.executable, "-m", "benchmarks.reference_servers", "tcpserver", "--port", "0"], True),
    "floor:minimal-selectors": (
        [sys.executable, "-m", "benchmarks.reference_servers", "minimal-selectors", "--port", "0"],
        False,
    ),
}
GOALS: list[tuple[str, str, float | None]] = [  # (design, reference, max ratio of persistent-echo CPU per request)
    ("threaded", "ref:ThreadingTCPServer", 1.1),
    ("selectors", "floor:minimal-selectors", 1.1),
    ("blocking", "ref:TCPServer", 1.1),
    ("selectors", "ref:asyncio", None),
    ("selectors", "ref:asyncio+pinned-malloc", None),
    ("floor:minimal-selectors", "ref:asyncio", None),
]


BEFORE_TREE: list[Path] = [ROOT]  # set by --before
BEFORE = "@before"  # a design's name with this suffix: the design from the --before checkout


def measure(name: str, mode: str, seconds: float, conn_log: str = "", tree: Path | None = None) -> dict[str, float]:
    if name.endswith(BEFORE):
        name, tree = name.removesuffix(BEFORE), BEFORE_TREE[0]
    cmd, one_at_a_time = SERVERS[name]
    if tree is not None:  # the same design from another checkout: run from there, so its code is imported
        cmd = ["sh", "-c", 'cd "$0" && exec "$@"', str(tree), *cmd]
    connections = (1 if one_at_a_time else 50) if mode == "persistent" else 10
    env = PINNED_MALLOC if name.endswith("+pinned-malloc") else None
    if conn_log:
        cmd = [*cmd, "--conn-log", conn_log]
    with ServerProcess.launch(cmd, name, env=env) as server:
        if conn_log:  # as in a run's measured window: the log adds up each request's service from now on
            mark_window(conn_log, start=time.monotonic())
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--port",
                str(server.port),
                "--server-pid",
                str(server.pid),
                "--mode",
                mode,
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            cwd=ROOT,
            check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["connections"] = connections
    return result


def conn_log_ab(seconds: float, repeat: int, designs: list[str], loads: list[str]) -> int:
    """Each design with its connection log off and on, interleaved in one run: the log's cost."""
    runs: dict[tuple[str, str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(repeat):
            for mode in loads:
                for name in designs:
                    for log in (False, True) if round_no % 2 == 0 else (True, False):
                        r = measure(name, mode, seconds, f"{tmp}/{name}.bin" if log else "")
                        runs.setdefault((name, mode, log), []).append(r["server_cpu_us_per_request"])
                        print(
                            f"round {round_no + 1} {mode:10} {name:20} log {'on ' if log else 'off'} "
                            f"{r['server_cpu_us_per_request']:7.1f} µs/req",
                            file=sys.stderr,
                        )
    print("| design | load | log off µs/req | log on µs/req | on ÷ off | goal |")
    print("|---|---|---|---|---|---|")
    ok = True
    for mode, goal in (("persistent", 1.03), ("connect", 1.05)):
        if mode not in loads:
            continue
        for name in designs:
            off = statistics.median(runs[(name, mode, False)])
            on = statistics.median(runs[(name, mode, True)])
            ratio = on / off
            ok &= ratio <= goal
            load = "persistent-echo" if mode == "persistent" else "connect-per-request"
            verdict = "ok" if ratio <= goal else "MISSED"
            print(f"| {name} | {load} | {off:.1f} | {on:.1f} | {ratio:.3f} | ≤ {goal} {verdict} |")
    return 0 if ok else 1


def tree_ab(seconds: float, repeat: int, designs: list[str], loads: list[str], other: Path, as_run: bool) -> int:
    """Each design from this checkout and from ``other`` (e.g. a worktree of the revision before a
    refactor), interleaved in one run: whether a change of code changed what a request costs the server."""
    runs: dict[tuple[str, str, str], list[float]] = {}
    trees = {"this": None, "other": other}
    tmp = Path(tempfile.mkdtemp(prefix="server-cost-"))
    for round_no in range(repeat):
        for mode in loads:
            for name in designs:
                for label in ("this", "other") if round_no % 2 == 0 else ("other", "this"):
                    log = str(tmp / f"{name}-{label}.bin") if as_run else ""
                    r = measure(name, mode, seconds, log, tree=trees[label])
                    runs.setdefault((name, mode, label), []).append(r["server_cpu_us_per_request"])
                    print(
                        f"round {round_no + 1} {mode:10} {name:28} {label:5} "
                        f"{r['server_cpu_us_per_request']:7.1f} µs/req",
                        file=sys.stderr,
                    )
    print(f"| design | load | {other} µs/req | this µs/req | this ÷ other |")
    print("|---|---|---|---|---|")
    for mode in loads:
        for name in designs:
            before = statistics.median(runs[(name, mode, "other")])
            after = statistics.median(runs[(name, mode, "this")])
            print(f"| {name} | {mode} | {before:.1f} | {after:.1f} | {after / before:.3f} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv", type=Path, default=ROOT / "benchmarks" / "results" / "server_cost.csv")
    ap.add_argument("--conn-log-ab", action="store_true", help="each design with its connection log off and on")
    ap.add_argument(
        "--designs", default=",".join(speaking("socklab")), help="with --conn-log-ab or --against: which designs"
    )
    ap.add_argument(
        "--loads", default="persistent,connect", help="with --conn-log-ab or --against: persistent, connect or both"
    )
    ap.add_argument("--against", type=Path, help="a checkout of another revision: each design from both, interleaved")
    ap.add_argument(
        "--as-run",
        action="store_true",
        help="designs keep their connection log, as in a socklab run (the references keep none: they have none)",
    )
    ap.add_argument("--servers", help="only these servers (comma-separated; default all), e.g. the goals' pairs")
    ap.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier revision: its goal designs run too, in the same rounds (NAME@before), "
        "so the goals' ratios before and after a change come from one run",
    )
    args = ap.parse_args()
    servers = args.servers.split(",") if args.servers else list(SERVERS)
    if args.before:
        BEFORE_TREE[0] = args.before.resolve()
        goal_designs = {design for design, _, limit in GOALS if limit is not None}
        # each beside its own after: a round's drift then hits the two alike
        servers = [n for name in servers for n in ([name, name + BEFORE] if name in goal_designs else [name])]
        GOALS[:0] = [(design + BEFORE, ref, None) for design, ref, limit in GOALS if limit is not None]
    loads = args.loads.split(",")
    if args.against:
        return tree_ab(args.seconds, args.repeat, args.designs.split(","), loads, args.against, args.as_run)
    if args.conn_log_ab:
        return conn_log_ab(args.seconds, args.repeat, args.designs.split(","), args.loads.split(","))
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="server-cost-"))
    for round_no in range(args.repeat):
        for mode in loads:
            for name in servers if round_no % 2 == 0 else servers[::-1]:
                is_design = not name.startswith(("ref:", "floor:"))  # the references keep no log
                r = measure(name, mode, args.seconds, str(tmp / f"{name}.bin") if args.as_run and is_design else "")
                runs.setdefault((name, mode), []).append(r)
                print(
                    f"round {round_no + 1} {mode:10} {name:24} {r['rps']:9,.0f} req/s "
                    f"{r['server_cpu_us_per_request']:6.1f} µs/req",
                    file=sys.stderr,
                )
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for (name, mode), rs in runs.items():
        rows.append(
            {
                "server": name,
                "load": "persistent-echo" if mode == "persistent" else "connect-per-request",
                "connections": rs[0]["connections"],
                "rps": round(statistics.median(r["rps"] for r in rs)),
                "server_cpu_us_per_request": round(statistics.median(r["server_cpu_us_per_request"] for r in rs), 1),
                "server_user_us_per_request": round(statistics.median(r["server_user_us_per_request"] for r in rs), 1),
                "server_sys_us_per_request": round(statistics.median(r["server_sys_us_per_request"] for r in rs), 1),
                "client_cpu_us_per_request": round(statistics.median(r["client_cpu_us_per_request"] for r in rs), 1),
                "errors": sum(r["errors"] for r in rs),
                "rounds": len(rs),
            }
        )
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("| server | load | conns | req/s | server CPU µs/req | of which user | of which sys |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['load']} | {r['connections']} | {r['rps']:,} | {r['server_cpu_us_per_request']} "
            f"| {r['server_user_us_per_request']} | {r['server_sys_us_per_request']} |"
        )
    ok = True
    print()
    for design, ref, limit in GOALS:
        for mode in loads:
            load = "persistent-echo" if mode == "persistent" else "connect-per-request"
            if (design, mode) not in runs or (ref, mode) not in runs:
                continue
            # The median of each round's ratio: a round runs the two a few seconds apart, so the drift of
            # a noisy machine cancels in it (medians taken apart drifted from 0.95 to 1.07 between runs).
            ratio = statistics.median(
                a["server_cpu_us_per_request"] / b["server_cpu_us_per_request"]
                for a, b in zip(runs[(design, mode)], runs[(ref, mode)], strict=True)
            )
            has_goal = limit is not None and load == "persistent-echo"
            goal = f"goal <= {limit}" if has_goal else "(no goal)"
            verdict = ("ok" if ratio <= limit else "MISSED") if has_goal else ""
            ok &= verdict != "MISSED"
            print(f"{load:20} {design:18} / {ref:24} = {ratio:4.2f}  {goal} {verdict}")
    print(f"\nwrote {args.csv}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
