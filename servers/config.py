"""A server's settings, each declared once: a field of :class:`ServerConfig` whose metadata holds its flag,
its check and its help.  Everything else is made from those fields: ``python -m servers``'s parser
(``servers.cli``), the command line the harness starts a server with (:func:`flags`), the harness's
own options for the server it starts (``loadtest.declare.settings``) and the docs' tables.

The one validator factory is here too (:func:`checked`, through :class:`Check`): argparse types that
convert, check, and let argparse say a bad value in one line.  Both ``servers.cli`` and the harness's
``Option.checked_type`` make theirs with it.  No sockets, no server: the harness reads this in a plain process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from servers.connlog import DEFAULT_CAP, STRIDE
from servers.protocol import Limits

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6666
DEFAULT_BACKLOG = 128
DEFAULT_READ_TIMEOUT = 10.0
# Past ~4,000 threads the kernel's teardown of a thread-per-connection server can exceed the 2 s stop
# bound (8,000 took up to 22 s); 2,048 stopped within ~1 s in every run measured.
DEFAULT_MAX_CONNECTIONS = 2048
DEFAULT_WORKERS = 4
_LIMITS = Limits()
# The addresses that listen on every interface ("" binds INADDR_ANY too): reachable from other machines.
WILDCARDS = ("0.0.0.0", "::", "")


def checked(convert: Callable[[str], T], ok: Callable[[T], bool], name: str) -> Callable[[str], T]:
    """An argparse type: convert, then check; `name` is what argparse's one-line error calls it."""

    def parse(text: str) -> T:
        value = convert(text)
        if not ok(value):
            raise ValueError
        return value

    parse.__name__ = name
    return parse


@dataclass(frozen=True)
class Check:
    """A setting's rule: its type and its bounds, so that the harness can state the same rule in its own
    words (``--backlog must be >= 0``) and argparse can refuse a bad value in one line."""

    convert: Callable[[str], Any]
    name: str  # what argparse's error calls a good value: "invalid positive integer value: '0'"
    minimum: float | None = None
    exclusive: bool = False  # the value must be > minimum, not >=
    maximum: float | None = None

    def ok(self, value: Any) -> bool:
        if self.minimum is not None and not (value > self.minimum if self.exclusive else value >= self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    @property
    def type(self) -> Callable[[str], Any]:
        return checked(self.convert, self.ok, self.name)


POSITIVE_INT = Check(int, "positive integer", minimum=1)
NONNEG_INT = Check(int, "non-negative integer", minimum=0)
PORT = Check(int, "port (0-65535)", minimum=0, maximum=65535)
NONNEG_SECONDS = Check(float, "non-negative number of seconds", minimum=0)
POSITIVE_NUMBER = Check(float, "positive number", minimum=0, exclusive=True)


def setting(default: Any, flag: str, help: str, check: Check | None = None, metavar: str | None = None) -> Any:
    """A ServerConfig field that is also a command-line flag (a bool one is a switch)."""
    return field(default=default, metadata={"flag": flag, "check": check, "help": help, "metavar": metavar})


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of a server: its fields' metadata make the command line (see the module docstring)."""

    host: str = setting(DEFAULT_HOST, "--host", f"address to bind (default {DEFAULT_HOST})")
    port: int = setting(DEFAULT_PORT, "--port", f"TCP port, 0 = any free port (default {DEFAULT_PORT})", PORT)
    backlog: int = setting(DEFAULT_BACKLOG, "--backlog", f"listen() backlog (default {DEFAULT_BACKLOG})", NONNEG_INT)
    max_frame: int = setting(
        _LIMITS.max_frame,
        "--max-frame",
        f"largest request frame and reply_len accepted (default {_LIMITS.max_frame})",
        POSITIVE_INT,
        "BYTES",
    )
    max_sleep_ms: int = setting(
        _LIMITS.max_sleep_ms, "--max-sleep-ms", f"largest SLEEP arg (default {_LIMITS.max_sleep_ms})", NONNEG_INT, "N"
    )
    max_work_us: int = setting(
        _LIMITS.max_work_us, "--max-work-us", f"largest WORK arg (default {_LIMITS.max_work_us})", NONNEG_INT, "N"
    )
    # Seconds a connection may be idle, a request may take to arrive from its first byte, and a
    # reply may take to be taken from when it is ready; 0 = no bound.
    read_timeout: float = setting(
        DEFAULT_READ_TIMEOUT,
        "--read-timeout",
        "close a connection idle for S seconds, whose request has not fully arrived S seconds after its "
        "first byte, or whose reply has not been fully taken S seconds after it was ready; 0 = never "
        f"(default {DEFAULT_READ_TIMEOUT:g})",
        NONNEG_SECONDS,
        "S",
    )
    workers: int = setting(
        DEFAULT_WORKERS,
        "--workers",
        "processes or threads of a pooled design (preforked, prethreaded, threadpool …; default "
        f"{DEFAULT_WORKERS}); others ignore it",
        POSITIVE_INT,
        "N",
    )
    max_connections: int = setting(  # open at once; more are accepted and closed at once
        DEFAULT_MAX_CONNECTIONS,
        "--max-connections",
        "connections served at once; one more is accepted and closed at once, counted as rejected "
        f"(default {DEFAULT_MAX_CONNECTIONS}); a design of several processes applies it in each (nginx's "
        "worker_connections)",
        POSITIVE_INT,
        "N",
    )
    max_requests: int = setting(
        0,
        "--max-requests",
        "close a connection after N requests, the server's FIN first (HTTP's keep-alive maximum); 0 = never (default)",
        NONNEG_INT,
        "N",
    )
    epoll_exclusive: bool = setting(
        False,
        "--epoll-exclusive",
        "event loops on a shared listener (preforked-selectors): watch it with EPOLLEXCLUSIVE (Linux 4.5), so "
        "a new connection wakes one worker instead of every one",
    )
    retire_after: float = setting(
        0.0,
        "--retire-worker-after",
        "pre-forked designs: worker 1 exits S seconds after it starts, once, closing its listener (a rolling "
        "restart); the parent forks its replacement; 0 = never (default)",
        NONNEG_SECONDS,
        "S",
    )
    conn_log: str = setting(
        "",
        "--conn-log",
        "keep a record of every connection in this file (accepted, service start, first request read, first "
        "reply written, the client's FIN, closed; servers.connlog); written in place as the server runs",
        metavar="PATH",
    )
    conn_log_cap: int = setting(
        DEFAULT_CAP,
        "--conn-log-cap",
        f"connections recorded in full before a 1-in-{STRIDE} sample (default {DEFAULT_CAP}); 0 = no log",
        NONNEG_INT,
        "N",
    )

    @property
    def limits(self) -> Limits:
        return Limits(self.max_frame, self.max_sleep_ms, self.max_work_us)


@dataclass(frozen=True)
class Setting:
    """One ServerConfig field as a flag: what the parser, the harness and the docs read."""

    name: str  # the field's
    flag: str
    type: type
    default: Any
    check: Check | None
    help: str
    metavar: str | None

    def argv(self, value: Any) -> list[str]:
        """This setting on a command line: a switch is its flag alone, when on."""
        if self.type is bool:
            return [self.flag] if value else []
        return [self.flag, f"{value:g}" if isinstance(value, float) else str(value)]


SETTINGS: dict[str, Setting] = {
    f.name: Setting(f.name, type=type(f.default), default=f.default, **f.metadata) for f in fields(ServerConfig)
}


def flags(**values: Any) -> list[str]:
    """The command line of ``python -m servers`` that sets these ServerConfig fields to these values."""
    return [arg for name, value in values.items() for arg in SETTINGS[name].argv(value)]
