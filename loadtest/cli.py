"""The ``socklab`` command.

    socklab client [--design V | --target HOST:PORT] [--requests N] [--connections C] [--op OP] ...

``client`` starts a server design as its own process (unless given a target),
sends a bounded number of requests over C persistent connections from plain
threads, prints a one-screen latency summary and stops the server.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from loadtest.client.socket_client import SocklabClient
from loadtest.declare import options, scenarios
from loadtest.declare.kinds import CONNECT, OPS
from loadtest.declare.target import format_target, parse_target
from loadtest.matrix import expect
from loadtest.matrix.processes import ServerProcess, ServerStartError
from servers import DESIGNS
from servers.cli import OneLineParser, nonneg_int, positive_int, positive_number
from servers.protocol import Op, encode_request


def _client(args: argparse.Namespace) -> int:
    server = None
    if args.target:
        target = args.target if "://" in args.target else f"tcp://{args.target}"
        try:
            host, port = parse_target(target)
        except ValueError as exc:
            print(f"socklab client: error: {exc}".replace("--host", "--target"), file=sys.stderr)
            return 2
    else:
        try:
            server = ServerProcess.start(args.design)
        except ServerStartError as exc:
            print(f"socklab client: {exc}", file=sys.stderr)
            return 2
        host, port = server.address
        print(f"started {args.design} on {format_target(host, port)} (pid {server.pid})")
    op = Op[args.op.upper()]
    frame = encode_request(op, args.arg, b"x" * args.payload_bytes)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    per_conn = [
        args.requests // args.connections + (i < args.requests % args.connections) for i in range(args.connections)
    ]

    def run(n: int) -> None:
        mine: list[float] = []
        errors: list[str] = []

        def on_request(kind: str, name: str, seconds: float, length: int, exc: BaseException | None) -> None:
            if exc is not None:
                errors.append(str(exc))
            elif kind != CONNECT:
                mine.append(seconds)

        client = SocklabClient(host, port, on_request=on_request)
        for _ in range(n):
            if client.request(op, name="client", frame=frame) is None:
                break  # reported; a client that failed stops, as a user would
        client.close()
        with lock:
            latencies.extend(mine)
            failures.extend(errors)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in per_conn]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if server is not None:
            server.stop()
    wall = time.perf_counter() - started
    latencies.sort()
    if latencies:

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

        print(
            f"{len(latencies)} requests in {wall:.2f} s = {len(latencies) / wall:,.0f} req/s over "
            f"{args.connections} connection(s); latency µs p50 {pct(50):.0f}  p90 {pct(90):.0f}  "
            f"p99 {pct(99):.0f}  max {latencies[-1] * 1e6:.0f}"
        )
    for failure in sorted(set(failures)):
        print(f"failure: {failure} ×{failures.count(failure)}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="socklab", description="socklab: measure TCP server architectures")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    c = sub.add_parser("client", help="start a design and exercise it with a built-in client")
    c.add_argument("--design", default="selectors", choices=list(DESIGNS))
    c.add_argument("--target", help="tcp://HOST:PORT (or HOST:PORT; [::1]:PORT for IPv6) of a running server")
    c.add_argument("--requests", type=positive_int, default=2000)
    c.add_argument("--connections", type=positive_int, default=4)
    c.add_argument("--op", default="ECHO", type=str.upper, choices=OPS)
    c.add_argument("--arg", type=nonneg_int, default=0, help="SLEEP ms or WORK µs")
    c.add_argument("--payload-bytes", type=nonneg_int, default=64)
    c.set_defaults(func=_client)

    from loadtest.matrix import compare

    m = sub.add_parser("compare", help="run a matrix of designs × loads × scenarios and compare them (the main job)")
    m.add_argument(
        "--designs",
        type=compare.design_list,
        default=None,
        help=f"comma-separated (default: every registered design, {','.join(DESIGNS)})",
    )
    m.add_argument(
        "--users",
        type=compare.users_list,
        default=None,
        help="comma-separated loads, e.g. 1,10,100 (default: each scenario's own, 10,50 for most)",
    )
    m.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=list(scenarios.SCENARIOS),
        metavar="NAME",
        help=f"one or more of: {', '.join(scenarios.SCENARIOS)} (default {' '.join(scenarios.DEFAULT_SCENARIOS)})",
    )
    m.add_argument(
        "--duration", type=compare.positive_duration, default=4.0, help="measured seconds per cell (default 4s)"
    )
    m.add_argument("--warmup", type=compare.parse_duration, default=1.0, help="uncounted seconds first (default 1s)")
    m.add_argument(
        "--processes", type=nonneg_int, default=0, help="Locust worker processes per cell (default: one process)"
    )
    m.add_argument("--out", type=Path, default=None, help="output folder (default reports/compare-<date-time>)")
    m.add_argument("--no-isolate", action="store_true", help="do not give each cell its own network namespace")
    m.add_argument(
        "--server-cmd",
        type=compare.named_command,
        action="append",
        metavar="NAME='COMMAND {port}'",
        help="also run every scenario against this command as the server (repeatable); socklab picks the port. "
        "Without --designs, only these commands run",
    )
    m.add_argument(
        "--connections",
        type=positive_int,
        default=None,
        help="connections per cell of a counted scenario, such as unp30 (default: the scenario's)",
    )
    m.add_argument(
        "--full",
        action="store_true",
        help=f"today's whole matrix: {', '.join(scenarios.DEFAULT_SCENARIOS)} × every design × each "
        "scenario's loads (default without --scenario/--designs/--users: the quick lessons, ~2 min)",
    )
    m.add_argument(
        "--quiet",
        action="store_true",
        help="print only the report's path, failed expectations and errors (for scripts)",
    )
    m.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="'SCENARIO/DESIGN[/Nu]: COLUMN OP VALUE; …'",
        help="a bound on a cell's summary figures, e.g. 'io-wait/threaded: rps >= 2000; users_starved == 0'"
        " ('*' for any scenario or design); a failed one is a line and exit status 3 (repeatable)",
    )
    m.add_argument(
        "--expect-file", type=Path, default=None, metavar="PATH", help="expectations, one a line ('#' comments)"
    )
    options.add_override_arguments(m)
    m.set_defaults(func=_compare)

    from loadtest.matrix import sweep

    w = sub.add_parser("sweep", help="latency against offered load, open loop, for each design; finds each knee")
    w.add_argument(
        "--designs",
        type=compare.design_list,
        default=None,
        help=f"comma-separated (default {','.join(sweep.DEFAULT_DESIGNS)})",
    )
    w.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=list(scenarios.SWEEP_SCENARIOS),
        metavar="NAME",
        help=f"one or more of: {', '.join(scenarios.SWEEP_SCENARIOS)} (default {' '.join(scenarios.DEFAULT_SWEEP)})",
    )
    w.add_argument(
        "--rates",
        type=sweep.rates_list,
        default=None,
        help="offered rates, req/s (default: doubling from the scenario's start rate)",
    )
    w.add_argument(
        "--max-rate", type=positive_number, default=12800.0, help="the doubling ladder's top, req/s (default 12800)"
    )
    w.add_argument(
        "--slo-p99-ms",
        type=positive_number,
        default=100.0,
        help="the p99 bound (from the intended start) a step must keep, ms (default 100)",
    )
    w.add_argument(
        "--refine", type=nonneg_int, default=2, help="extra steps halving the bracket around the knee (default 2)"
    )
    w.add_argument(
        "--users",
        type=positive_int,
        default=None,
        help="users sharing each step's schedule (default 10; every arrival a connection)",
    )
    w.add_argument(
        "--duration", type=compare.positive_duration, default=3.0, help="measured seconds per step (default 3s)"
    )
    w.add_argument("--warmup", type=compare.parse_duration, default=1.0, help="uncounted seconds first (default 1s)")
    w.add_argument("--processes", type=nonneg_int, default=0, help="Locust worker processes per step (default: one)")
    w.add_argument("--out", type=Path, default=None, help="output folder (default reports/sweep-<date-time>)")
    w.add_argument("--no-isolate", action="store_true", help="do not give each step its own network namespace")
    w.set_defaults(func=_sweep, connections=None)
    options.add_override_arguments(w)

    from loadtest.matrix import lab

    lab.add_parser(sub)
    sub.choices["lab"].set_defaults(func=_lab)

    r = sub.add_parser("report", help="(re)build summary.csv and report.html of runs; compare.html of several")
    r.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    r.add_argument("--out", type=Path, help="folder for the comparison (default reports/compare-<date-time>)")
    r.set_defaults(func=_report)
    return parser


def _compare(args: argparse.Namespace) -> int:
    from loadtest.matrix import compare

    for notice in options.apply_deprecated(args):
        print(f"socklab compare: {notice}", file=sys.stderr)
    # Nothing chosen: the quick lessons (loadtest.declare.scenarios.QUICK); --full or any choice: the matrix.
    args.quick = not (args.full or args.scenario or args.designs or args.users or args.server_cmd)
    if not args.scenario:
        args.scenario = (
            [lesson.scenario for lesson in scenarios.QUICK] if args.quick else list(scenarios.DEFAULT_SCENARIOS)
        )
    if args.designs is None:
        args.designs = [] if args.server_cmd else list(DESIGNS)  # --server-cmd alone: only the commands
    try:
        args.expectations = [expect.parse(text) for text in args.expect]
        if args.expect_file is not None:
            args.expectations += expect.read_file(args.expect_file)
    except ValueError as exc:
        print(f"socklab compare: error: {exc}", file=sys.stderr)
        return 2
    planned = [(c.scenario.name, c.design, c.users) for c in compare.cells_of(args, Path("."))]
    stray = expect.unmatched(args.expectations, planned)
    problem = compare.over_caps(args) or (
        stray
        and f"--expect {stray.text!r} names no cell of this matrix "
        f"(scenarios {', '.join(dict.fromkeys(p[0] for p in planned))}; designs "
        f"{', '.join(dict.fromkeys(p[1] for p in planned))})"
    )
    if problem:
        print(f"socklab compare: error: {problem}", file=sys.stderr)
        return 2
    return compare.main(args)


def _sweep(args: argparse.Namespace) -> int:
    from loadtest.matrix import sweep

    for notice in options.apply_deprecated(args):
        print(f"socklab sweep: {notice}", file=sys.stderr)
    problem = sweep.validate(args)
    if problem:
        print(f"socklab sweep: error: {problem}", file=sys.stderr)
        return 2
    return sweep.main(args)


def _lab(args: argparse.Namespace) -> int:
    from loadtest.matrix import lab

    if not args.list:
        problem = lab.check_names(args.names) if args.names else "name an experiment, or all (socklab lab --list)"
        if problem:
            print(f"socklab lab: error: {problem}", file=sys.stderr)
            return 2
    return lab.main(args)


def _report(args: argparse.Namespace) -> int:
    from loadtest.report import build_compare, build_run_report

    missing = [d for d in args.run_dirs if not (d / "run.json").exists()]
    if missing:
        print(
            f"socklab report: error: {missing[0]} is not a run folder (no run.json); "
            "give folders written by a socklab run",
            file=sys.stderr,
        )
        return 2
    for d in args.run_dirs:
        _, page = build_run_report(d)
        print(f"wrote {page}")
    if len(args.run_dirs) > 1 or args.out:
        out = args.out or Path("reports") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
        _, page = build_compare(args.run_dirs, out)
        print(f"wrote {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
