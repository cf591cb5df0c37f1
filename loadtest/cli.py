"""The ``socklab`` command.

    socklab client [--variant V | --target HOST:PORT] [--requests N] [--connections C] [--op OP] ...

``client`` starts a server variant as its own process (unless given a target),
sends a bounded number of requests over C persistent connections from plain
threads, prints a one-screen latency summary and stops the server.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

from loadtest.server_process import ServerProcess, ServerStartError
from servers import VARIANTS
from servers.cli import OneLineParser, nonneg_int, positive_number
from servers.protocol import Op, ResponseDecoder, encode_request


def _client(args: argparse.Namespace) -> int:
    server = None
    if args.target:
        host, _, port = args.target.rpartition(":")
        address = (host or "127.0.0.1", int(port))
    else:
        try:
            server = ServerProcess.start(args.variant)
        except ServerStartError as exc:
            print(f"socklab client: {exc}", file=sys.stderr)
            return 2
        address = server.address
        print(f"started {args.variant} on {address[0]}:{address[1]} (pid {server.pid})")
    frame = encode_request(Op[args.op.upper()], args.arg, b"x" * args.payload_bytes)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    per_conn = [
        args.requests // args.connections + (i < args.requests % args.connections) for i in range(args.connections)
    ]

    def run(n: int) -> None:
        mine: list[float] = []
        try:
            with socket.create_connection(address, timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                decoder = ResponseDecoder()
                for _ in range(n):
                    started = time.perf_counter()
                    sock.sendall(frame)
                    got: list[tuple[int, bytes]] = []
                    while not got:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("server closed the connection")
                        got = decoder.feed(data)
                    mine.append(time.perf_counter() - started)
                    if got[0][0] != 0:
                        raise ConnectionError(f"status {got[0][0]}")
        except OSError as exc:
            with lock:
                failures.append(str(exc))
        with lock:
            latencies.extend(mine)

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
    c = sub.add_parser("client", help="start a variant and exercise it with a built-in client")
    c.add_argument("--variant", default="selectors", choices=list(VARIANTS))
    c.add_argument("--target", help="HOST:PORT of a running server instead of starting one")
    c.add_argument("--requests", type=int, default=2000)
    c.add_argument("--connections", type=int, default=4)
    c.add_argument("--op", default="echo", choices=[op.name.lower() for op in Op])
    c.add_argument("--arg", type=int, default=0, help="SLEEP ms or WORK µs")
    c.add_argument("--payload-bytes", type=int, default=64)
    c.set_defaults(func=_client)

    from loadtest import compare

    m = sub.add_parser("compare", help="run a matrix of variants × loads × scenarios and compare them (the main job)")
    m.add_argument(
        "--variants",
        type=compare.variant_list,
        default=list(VARIANTS),
        help=f"comma-separated (default {','.join(VARIANTS)})",
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
        choices=list(compare.SCENARIOS),
        metavar="NAME",
        help=f"one or more of: {', '.join(compare.SCENARIOS)} (default {' '.join(compare.DEFAULT_SCENARIOS)})",
    )
    m.add_argument(
        "--duration", type=compare.parse_duration, default=4.0, help="measured seconds per cell (default 4s)"
    )
    m.add_argument("--warmup", type=compare.parse_duration, default=1.0, help="uncounted seconds first (default 1s)")
    m.add_argument("--processes", type=int, default=0, help="Locust worker processes per cell (default: one process)")
    m.add_argument(
        "--backlog", type=int, default=None, help="listen() backlog for every cell (default: the scenario's)"
    )
    m.add_argument("--out", type=Path, default=None, help="output folder (default reports/compare-<date-time>)")
    m.add_argument("--no-isolate", action="store_true", help="do not give each cell its own network namespace")
    override = "override every scenario's value (as in the locustfile's option)"
    m.add_argument("--op", choices=["ECHO", "SLEEP", "WORK"], default=None, help=override)
    for name in ("payload-bytes", "reply-bytes", "sleep-ms", "work-us"):
        m.add_argument(f"--{name}", type=nonneg_int, default=None, help=override)
    for name in ("connect-timeout", "read-timeout", "idle-interval"):
        m.add_argument(f"--{name}", type=positive_number, default=None, help=override)
    m.set_defaults(func=_compare)

    r = sub.add_parser("report", help="(re)build summary.csv and report.html of runs; compare.html of several")
    r.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    r.add_argument("--out", type=Path, help="folder for the comparison (default reports/compare-<date-time>)")
    r.set_defaults(func=_report)
    return parser


def _compare(args: argparse.Namespace) -> int:
    from loadtest import compare

    if not args.scenario:
        args.scenario = list(compare.DEFAULT_SCENARIOS)
    if args.processes < 0 or (args.backlog is not None and args.backlog < 0):
        print("socklab compare: error: --processes and --backlog must be >= 0", file=sys.stderr)
        return 2
    return compare.main(args)


def _report(args: argparse.Namespace) -> int:
    from loadtest.report import build_compare, build_run_report

    missing = [d for d in args.run_dirs if not (d / "run.json").exists()]
    if missing:
        print(f"socklab report: error: {missing[0]} is not a run folder (no run.json); "
              "give folders written by a socklab run", file=sys.stderr)  # fmt: skip
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
