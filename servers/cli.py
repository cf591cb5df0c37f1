"""The command line of ``python -m servers DESIGN [options]``: run one design in the foreground."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from servers import DESIGNS, design_class
from servers.base import (
    DEFAULT_BACKLOG,
    DEFAULT_HOST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WORKERS,
    ServerConfig,
)
from servers.connlog import DEFAULT_CAP, STRIDE
from servers.protocol import Limits

PROG = "python -m servers"
WILDCARDS = ("0.0.0.0", "::", "")
T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports misuse in one line (the problem and where to look) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def checked(convert: Callable[[str], T], ok: Callable[[T], bool], name: str) -> Callable[[str], T]:
    """An argparse type: convert, then check; `name` is what argparse's one-line error calls it."""

    def parse(text: str) -> T:
        value = convert(text)
        if not ok(value):
            raise ValueError
        return value

    parse.__name__ = name
    return parse


positive_int = checked(int, lambda v: v >= 1, "positive integer")
nonneg_int = checked(int, lambda v: v >= 0, "non-negative integer")
port_number = checked(int, lambda v: 0 <= v <= 65535, "port (0-65535)")
nonneg_seconds = checked(float, lambda v: v >= 0, "non-negative number of seconds")
positive_number = checked(float, lambda v: v > 0, "positive number")


def build_parser() -> argparse.ArgumentParser:
    limits = Limits()
    p = OneLineParser(prog=PROG, description="Run one socklab server design.")
    p.add_argument("design", nargs="?", help=f"one of: {', '.join(DESIGNS)}")
    p.add_argument("--list", action="store_true", help="list the designs and exit")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"TCP port, 0 = any free port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--backlog", type=nonneg_int, default=DEFAULT_BACKLOG, help=f"listen() backlog (default {DEFAULT_BACKLOG})"
    )
    p.add_argument(
        "--max-frame",
        type=positive_int,
        default=limits.max_frame,
        metavar="BYTES",
        help=f"largest request frame and reply_len accepted (default {limits.max_frame})",
    )
    p.add_argument(
        "--max-sleep-ms",
        type=nonneg_int,
        default=limits.max_sleep_ms,
        metavar="N",
        help=f"largest SLEEP arg (default {limits.max_sleep_ms})",
    )
    p.add_argument(
        "--max-work-us",
        type=nonneg_int,
        default=limits.max_work_us,
        metavar="N",
        help=f"largest WORK arg (default {limits.max_work_us})",
    )
    p.add_argument(
        "--read-timeout",
        type=nonneg_seconds,
        default=DEFAULT_READ_TIMEOUT,
        metavar="S",
        help="close a connection idle for S seconds, whose request has not fully arrived S seconds after its "
        "first byte, or whose reply has not been fully taken S seconds after it was ready; 0 = never "
        f"(default {DEFAULT_READ_TIMEOUT:g})",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"processes or threads of a pooled design (preforked, prethreaded, threadpool …; default "
        f"{DEFAULT_WORKERS}); others ignore it",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections served at once; one more is accepted and closed at once, counted as rejected "
        f"(default {DEFAULT_MAX_CONNECTIONS}); a design of several processes applies it in each (nginx's "
        "worker_connections)",
    )
    p.add_argument(
        "--max-requests",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="close a connection after N requests, the server's FIN first (HTTP's keep-alive maximum); 0 = never "
        "(default)",
    )
    p.add_argument(
        "--epoll-exclusive",
        action="store_true",
        help="event loops on a shared listener (preforked-selectors): watch it with EPOLLEXCLUSIVE (Linux 4.5), so "
        "a new connection wakes one worker instead of every one",
    )
    p.add_argument(
        "--retire-worker-after",
        type=nonneg_seconds,
        default=0.0,
        metavar="S",
        help="pre-forked designs: worker 1 exits S seconds after it starts, once, closing its listener (a rolling "
        "restart); the parent forks its replacement; 0 = never (default)",
    )
    p.add_argument(
        "--conn-log",
        default="",
        metavar="PATH",
        help="keep a record of every connection in this file (accepted, service start, first request read, first "
        "reply written, the client's FIN, closed; servers.connlog); written in place as the server runs",
    )
    p.add_argument(
        "--conn-log-cap",
        type=nonneg_int,
        default=DEFAULT_CAP,
        metavar="N",
        help=f"connections recorded in full before a 1-in-{STRIDE} sample (default {DEFAULT_CAP}); 0 = no log",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in DESIGNS:
            width = max(map(len, DESIGNS))
            print(f"{name:{width}}  {design_class(name).description}")
        return 0
    if not args.design:
        parser.error(f"name a design: {', '.join(DESIGNS)}")
    try:
        cls = design_class(args.design)
    except KeyError as exc:
        parser.error(exc.args[0])
    config = ServerConfig(
        host=args.host,
        port=args.port,
        backlog=args.backlog,
        read_timeout=args.read_timeout,
        limits=Limits(args.max_frame, args.max_sleep_ms, args.max_work_us),
        max_connections=args.max_connections,
        workers=args.workers,
        conn_log=args.conn_log,
        conn_log_cap=args.conn_log_cap,
        max_requests=args.max_requests,
        epoll_exclusive=args.epoll_exclusive,
        retire_after=args.retire_worker_after,
    )
    if args.host in WILDCARDS:
        sys.stderr.write(
            f"{PROG}: warning: --host {args.host} listens on every interface, reachable from other machines; "
            "use 127.0.0.1 or ::1 unless that is what you want\n"
        )
    try:
        server = cls(config)
    except socket.gaierror as exc:
        parser.error(f"--host {args.host}: {exc.strerror}; use a local address such as 127.0.0.1 or ::1")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            parser.error(
                f"port {args.port} on {args.host} is already in use; pick another --port, or --port 0 for a free one"
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            parser.error(f"--host {args.host} is not an address of this machine; use 127.0.0.1 or ::1")
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    code = server.run()
    # The stopped line is out and every connection closed: nothing is left to finalize, and
    # finalizing an interpreter with thousands of daemon threads can take seconds.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
