"""The command line of ``python -m servers DESIGN [options]``: run one design in the foreground.

Its flags are ServerConfig's fields (``servers.config`` declares each, with its check and help); a bad
value, a busy port or a foreign address is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import NoReturn

from servers import DESIGNS, design_class
from servers.base import BaseServer
from servers.config import (
    NONNEG_INT,
    NONNEG_SECONDS,
    PORT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    SETTINGS,
    WILDCARDS,
    ServerConfig,
)

PROG = "python -m servers"
# argparse types for other command lines (socklab's), from the one validator factory (servers.config).
positive_int = POSITIVE_INT.type
nonneg_int = NONNEG_INT.type
port_number = PORT.type
nonneg_seconds = NONNEG_SECONDS.type
positive_number = POSITIVE_NUMBER.type


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports misuse in one line (the problem and where to look) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The design, --list, and a flag per ServerConfig field (servers.config declares each)."""
    p = OneLineParser(prog=PROG, description="Run one socklab server design.")
    p.add_argument("design", nargs="?", help=f"one of: {', '.join(DESIGNS)}")
    p.add_argument("--list", action="store_true", help="list the designs and exit")
    for s in SETTINGS.values():
        if s.type is bool:  # a switch
            p.add_argument(s.flag, dest=s.name, action="store_true", help=s.help)
            continue
        kind = s.check.type if s.check else s.type
        p.add_argument(s.flag, dest=s.name, type=kind, default=s.default, metavar=s.metavar, help=s.help)
    return p


def listen(parser: argparse.ArgumentParser, cls: type[BaseServer], config: ServerConfig) -> BaseServer:
    """The design's server, listening; an address it cannot listen on is one line (and exit 2)."""
    host, port = SETTINGS["host"].flag, SETTINGS["port"].flag
    if config.host in WILDCARDS:
        sys.stderr.write(
            f"{PROG}: warning: {host} {config.host} listens on every interface, reachable from other machines; "
            "use 127.0.0.1 or ::1 unless that is what you want\n"
        )
    try:
        return cls(config)
    except socket.gaierror as exc:
        parser.error(f"{host} {config.host}: {exc.strerror}; use a local address such as 127.0.0.1 or ::1")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            parser.error(
                f"port {config.port} on {config.host} is already in use; pick another {port}, "
                f"or {port} 0 for a free one"
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            parser.error(f"{host} {config.host} is not an address of this machine; use 127.0.0.1 or ::1")
        parser.error(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")


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
    if DESIGNS[args.design].defaults:  # its own defaults (the seed's port 6666, listen(10)); a flag still wins
        parser.set_defaults(**dict(DESIGNS[args.design].defaults))
        args = parser.parse_args(argv)
    config = ServerConfig(**{name: getattr(args, name) for name in SETTINGS})
    server = listen(parser, cls, config)
    code = server.run()
    # The stopped line is out and every connection closed: nothing is left to finalize, and
    # finalizing an interpreter with thousands of daemon threads can take seconds.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
