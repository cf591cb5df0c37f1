"""The command line of ``python -m servers VARIANT [options]``: run one variant in the foreground."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from typing import NoReturn

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


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports misuse in one line (the problem and where to look) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError
    return value


_positive_int.__name__ = "positive integer"
_nonneg_int.__name__ = "non-negative integer"
_port.__name__ = "port (0-65535)"
_seconds.__name__ = "non-negative number of seconds"


def build_parser() -> argparse.ArgumentParser:
    limits = Limits()
    p = OneLineParser(prog=PROG, description="Run one socklab server variant.")
    p.add_argument("variant", nargs="?", help=f"one of: {', '.join(VARIANTS)}")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"TCP port, 0 = any free port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--backlog", type=_nonneg_int, default=DEFAULT_BACKLOG, help=f"listen() backlog (default {DEFAULT_BACKLOG})"
    )
    p.add_argument(
        "--max-frame",
        type=_positive_int,
        default=limits.max_frame,
        metavar="BYTES",
        help=f"largest request frame and reply_len accepted (default {limits.max_frame})",
    )
    p.add_argument(
        "--max-sleep-ms",
        type=_nonneg_int,
        default=limits.max_sleep_ms,
        metavar="N",
        help=f"largest SLEEP arg (default {limits.max_sleep_ms})",
    )
    p.add_argument(
        "--max-work-us",
        type=_nonneg_int,
        default=limits.max_work_us,
        metavar="N",
        help=f"largest WORK arg (default {limits.max_work_us})",
    )
    p.add_argument(
        "--read-timeout",
        type=_seconds,
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
