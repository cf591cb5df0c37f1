"""The ``socklab`` command: what each subcommand does (its options are declared in :mod:`loadtest.declare.commands`,
and the parser is made from them).

    socklab compare | sweep | lab | report ...
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
from loadtest.declare import commands, options, scenarios
from loadtest.declare.kinds import CONNECT
from loadtest.declare.target import format_target, parse_target
from loadtest.matrix import expect
from loadtest.matrix.processes import ServerProcess, ServerStartError
from servers import speaking
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
    started = time.perf_counter()
    try:
        latencies, failures = _exercise(host, port, args)
    finally:
        if server is not None:
            server.stop()
    _print_latencies(sorted(latencies), time.perf_counter() - started, args.connections)
    for failure in sorted(set(failures)):
        print(f"failure: {failure} ×{failures.count(failure)}", file=sys.stderr)
    return 1 if failures else 0


def _exercise(host: str, port: int, args: argparse.Namespace) -> tuple[list[float], list[str]]:
    """args.requests over args.connections persistent connections, a thread each: their latencies and failures."""
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

    threads = [threading.Thread(target=run, args=(n,)) for n in per_conn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures


def _print_latencies(latencies: list[float], wall: float, connections: int) -> None:
    if not latencies:
        return

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

    print(
        f"{len(latencies)} requests in {wall:.2f} s = {len(latencies) / wall:,.0f} req/s over "
        f"{connections} connection(s); latency µs p50 {pct(50):.0f}  p90 {pct(90):.0f}  "
        f"p99 {pct(99):.0f}  max {latencies[-1] * 1e6:.0f}"
    )


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
        # --server-cmd alone: only the commands; else every design that answers the scenarios' frames
        args.designs = [] if args.server_cmd else speaking("socklab")
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
        out = commands.output_folder(args.out, commands.COMMANDS["report"].folder)
        _, page = build_compare(args.run_dirs, out)
        print(f"wrote {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """``socklab``'s parser: the commands and options of :mod:`loadtest.declare.commands`, each with its handler."""
    return commands.build_parser(
        {"client": _client, "compare": _compare, "sweep": _sweep, "lab": _lab, "report": _report}
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
