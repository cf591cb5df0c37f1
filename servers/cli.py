"""The command line of ``python -m servers VARIANT [options]``: run one variant in the foreground."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from servers import VARIANTS, variant_class
from servers.base import (
    DEFAULT_BACKLOG,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT,
    ServerConfig,
)
from servers.protocol import Limits

PROG = "python -m servers"
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
    p = OneLineParser(prog=PROG, description="Run one socklab server variant.")
    p.add_argument("variant", nargs="?", help=f"one of: {', '.join(VARIANTS)}")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
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
        help=f"close a connection idle or not reading for S seconds; 0 = never (default {DEFAULT_READ_TIMEOUT:g})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in VARIANTS:
            print(f"{name:10} {variant_class(name).description}")
        return 0
    if not args.variant:
        parser.error(f"name a variant: {', '.join(VARIANTS)}")
    try:
        cls = variant_class(args.variant)
    except KeyError as exc:
        parser.error(exc.args[0])
    config = ServerConfig(
        host=args.host,
        port=args.port,
        backlog=args.backlog,
        read_timeout=args.read_timeout,
        limits=Limits(args.max_frame, args.max_sleep_ms, args.max_work_us),
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
    return server.run()
