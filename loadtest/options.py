"""Every socklab option, declared once (gunicorn's ``config.py`` idea: one ``Setting`` per option).

From :data:`OPTIONS` come the Locust command-line/web-UI arguments
(:func:`add_locust_arguments`), their validation (:func:`validate`), the option dump in
``run.json`` (:func:`option_values`), the options ``socklab compare`` lets a user override for
every scenario (:func:`add_override_arguments`, :func:`overrides`), the command line of the server
socklab starts (:func:`server_args`: an option that declares ``server_flag`` becomes that flag),
the web UI's list of options that restart the server, and the docs' options table
(``python -m loadtest.docs``).  The op names, variant names and user modes are written here and
nowhere else.

This module imports neither locust nor gevent: ``socklab compare`` reads it in a plain process.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from loadtest.kinds import OPS
from loadtest.processes import split_named_command
from loadtest.target import parse_target
from servers import VARIANTS
from servers.base import DEFAULT_BACKLOG, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, DEFAULT_WORKERS
from servers.connlog import DEFAULT_CAP as CONN_LOG_CAP
from servers.protocol import Limits

USER_MODES: tuple[str, ...] = ("persistent", "connect-per-request", "idle")  # loadtest.users binds each to a class
ARRIVALS: tuple[str, ...] = ("constant", "poisson")
DEFAULT_VARIANT = "selectors"
SERVER_CHOICES: tuple[str, ...] = ("auto", *VARIANTS, "none")


@dataclass(frozen=True)
class Option:
    """One socklab option: its parser argument, its rule, and where it appears."""

    name: str  # as on the command line, without the dashes
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    web_ui: bool = True  # shown in Locust's web UI (choices become a dropdown)
    overridable: bool = False  # `socklab compare --NAME` overrides every scenario's preset
    minimum: float | None = None  # the smallest value allowed
    exclusive_minimum: bool = False  # the value must be > minimum, not >=
    # The server cap this value must not exceed, as (the option that sets the cap, offset): checked
    # whenever socklab starts the server, so no run sends only refused requests.
    cap: tuple[str, int] | None = None
    server_flag: str | None = None  # the flag of `python -m servers` this option becomes
    restarts_server: bool = False  # a change between two web-UI tests restarts the server (server flags do)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, in words; None if it is."""
        if self.minimum is None or value is None:
            return None
        if self.exclusive_minimum and not value > self.minimum:
            return f"{self.flag} must be > {self.minimum:g}"
        if not self.exclusive_minimum and not value >= self.minimum:
            return f"{self.flag} must be >= {self.minimum:g}"
        return None

    def checked_type(self) -> Callable[[str], Any]:
        """An argparse type that converts and applies the rule (argparse then says one line)."""

        def parse(text: str) -> Any:
            value = self.type(text)
            if self.problem(value):
                raise ValueError
            return value

        rule = ">" if self.exclusive_minimum else ">="
        name = self.type.__name__
        parse.__name__ = f"{name} {rule} {self.minimum:g}" if self.minimum is not None else name
        return parse


def _op(text: str) -> str:
    return text.upper()


_op.__name__ = "op"

_LIMITS = Limits()

OPTIONS: tuple[Option, ...] = (
    Option("user-mode", str, "persistent", "which user class runs when none is named on the command line",
           choices=USER_MODES),
    Option("op", _op, "ECHO", "request op", choices=OPS, overridable=True),
    Option("payload-bytes", int, 64, "request payload size", overridable=True, minimum=0, cap=("max-frame", -9)),
    Option("reply-bytes", int, 0, "reply body size, 0 = echo the payload", overridable=True, minimum=0,
           cap=("max-frame", 0)),
    Option("sleep-ms", int, 20, "SLEEP argument in ms", overridable=True, minimum=0, cap=("max-sleep-ms", 0)),
    Option("work-us", int, 1000, "WORK argument in µs", overridable=True, minimum=0, cap=("max-work-us", 0)),
    Option("connect-timeout", float, 5.0, "connect() timeout in s", overridable=True, minimum=0,
           exclusive_minimum=True),
    Option("reply-timeout", float, 10.0, "seconds a client waits for a complete reply (the server's own bound "
           "is --server-read-timeout)", overridable=True, minimum=0, exclusive_minimum=True),
    Option("idle-interval", float, 5.0, "IdleUser: seconds between its small requests", overridable=True, minimum=0,
           exclusive_minimum=True),
    Option("pipeline", int, 1, "PersistentUser: requests in flight on its connection (the protocol answers in "
           "order); each request's latency is still its own send → last reply byte, so it includes the wait behind "
           "those ahead of it — a different workload from 1 (redis-benchmark -P, wrk's pipelining)", overridable=True,
           minimum=1),
    Option("request-events", bool, False, "fire Locust's request event for every request, for plugins that listen to "
           "it; without it, requests reach Locust's statistics in bulk every 100 ms — the same table, CSVs, charts "
           "and percentiles, at a fraction of the cost per request"),
    Option("arrival-rate", float, 0.0, "open loop: requests per second for the whole run, across users and "
           "processes, on a schedule fixed in advance; latency counts from each intended start; 0 = closed loop",
           overridable=True, minimum=0),
    Option("arrivals", str, "constant", "open loop: the spacing of each user's arrivals", choices=ARRIVALS,
           overridable=True),
    Option("max-connecting", int, 1000, "open loop, ConnectPerRequestUser: simultaneous connections one load process "
           "may have open; an arrival beyond it waits (and counts as late)", overridable=True, minimum=1),
    Option("server", str, "auto", f"server variant to start for this run; auto = {DEFAULT_VARIANT} unless --host is "
           "given; none = use --host only", choices=SERVER_CHOICES, restarts_server=True),
    Option("server-bind", str, "127.0.0.1", "address the started server listens on: an address of this host that "
           "the load reaches (e.g. 198.51.100.1 for workers on other hosts); a wildcard needs --server-advertise"),
    Option("server-advertise", str, "", "the address workers are told to connect to, when it is not --server-bind "
           "(needed with a wildcard bind)"),
    Option("backlog", int, DEFAULT_BACKLOG, "listen() backlog of the started server", overridable=True, minimum=0,
           server_flag="--backlog"),
    Option("server-workers", int, DEFAULT_WORKERS, "processes or threads of a design with workers socklab starts "
           "(preforked, preforked-reuseport, prethreaded, threadpool)", overridable=True, minimum=1,
           server_flag="--workers"),
    Option("max-connections", int, DEFAULT_MAX_CONNECTIONS, "connections the started server serves at once; "
           "more are accepted and closed at once", overridable=True, minimum=1, server_flag="--max-connections"),
    Option("max-frame", int, _LIMITS.max_frame, "the started server's largest request frame and reply_len, bytes",
           overridable=True, minimum=1, server_flag="--max-frame"),
    Option("max-sleep-ms", int, _LIMITS.max_sleep_ms, "the started server's largest SLEEP argument", overridable=True,
           minimum=0, server_flag="--max-sleep-ms"),
    Option("max-work-us", int, _LIMITS.max_work_us, "the started server's largest WORK argument", overridable=True,
           minimum=0, server_flag="--max-work-us"),
    Option("server-read-timeout", float, DEFAULT_READ_TIMEOUT, "the started server closes a connection idle this "
           "long, or whose request or reply takes this long to cross; 0 = never", overridable=True, minimum=0,
           server_flag="--read-timeout"),
    Option("conn-log-cap", int, CONN_LOG_CAP, "connections the started server records in full (accepted, service "
           "start, first request and reply, FIN, close) before a 1-in-100 sample, for the per-connection timeline; "
           "0 = no server log", minimum=0, server_flag="--conn-log-cap"),
    Option("server-cmd", str, "", "start this command as the server instead of a variant: '[NAME=]COMMAND … {port} …' "
           "— socklab picks a free port, waits until it accepts, monitors and stops it like a variant",
           restarts_server=True),
    Option("connections-total", int, 0, "ConnectPerRequestUser: end the run once this many connections have "
           "completed (each load process its share); 0 = no count, run for -t", minimum=0),
    Option("monitor-interval", float, 0.5, "seconds between monitor samples of the started server; 0 = no monitor",
           minimum=0),
    Option("live-interval", float, 5.0, "--headless: seconds between socklab's live lines (states, accept queue, "
           "overflows, users served); 0 = none", web_ui=False, minimum=0),
    Option("warmup", float, 0.0, "seconds after the start whose requests are not counted (stats reset then)",
           minimum=0),
    Option("scenario", str, "", "a label recorded in run.json", web_ui=False),
    Option("report-dir", str, "", "folder for socklab's output (default reports/<run-id>)"),
)  # fmt: skip
# Old spellings that still work, with a one-line notice: old name → new name.
DEPRECATED: dict[str, str] = {"read-timeout": "reply-timeout"}

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def overridable() -> Iterator[Option]:
    return (o for o in OPTIONS if o.overridable)


def add_locust_arguments(parser: Any) -> None:
    """Add every option to Locust's parser.  No side effects: Locust calls this on every web-UI page load.

    On the parser itself, not a group: Locust's web UI lists only the parser's own arguments
    (those that carry include_in_web_ui), with a dropdown for choices.
    """
    for o in OPTIONS:
        if o.type is bool:  # a switch: on when given (a checkbox in the web UI)
            parser.add_argument(o.flag, action="store_true", default=False, help=o.help, include_in_web_ui=o.web_ui)
            continue
        default = f" (default {o.default})" if o.default not in ("", None) else ""
        parser.add_argument(
            o.flag,
            type=o.type,
            default=o.default,
            choices=list(o.choices) if o.choices else None,
            help=o.help + default,
            include_in_web_ui=o.web_ui,
        )
    for old_name, new_name in DEPRECATED.items():
        parser.add_argument(f"--{old_name}", type=BY_NAME[new_name].type, default=None, help=argparse.SUPPRESS,
                            include_in_web_ui=False)  # fmt: skip


def apply_deprecated(options: Any) -> list[str]:
    """Old spellings given: their values go to the new names; one notice line each."""
    notices = []
    for old_name, new_name in DEPRECATED.items():
        value = getattr(options, old_name.replace("-", "_"), None)
        if value is not None:
            setattr(options, new_name.replace("-", "_"), value)
            setattr(options, old_name.replace("-", "_"), None)
            notices.append(f"--{old_name} is deprecated: it is now --{new_name} (the client's wait for a reply; the "
                           f"server's own bound is --server-read-timeout); using --{new_name} {value:g}")  # fmt: skip
    return notices


def validate(options: Any) -> str | None:
    """The first problem with the parsed options, as one line; None if there is none."""
    for o in OPTIONS:
        problem = o.problem(getattr(options, o.dest, None))
        if problem:
            return problem
    return None


def over_server_caps(options: Any) -> str | None:
    """A value the started server would refuse on every request, as one line; None if none is.

    Only the op's own argument counts (a --sleep-ms is harmless in an ECHO run); the caps are the
    run's own --max-frame, --max-sleep-ms and --max-work-us.
    """
    op = str(getattr(options, "op", "ECHO")).upper()
    relevant = {"payload-bytes", "reply-bytes", {"SLEEP": "sleep-ms", "WORK": "work-us"}.get(op, "")}
    for o in OPTIONS:
        if o.cap is None or o.name not in relevant:
            continue
        cap_name, offset = o.cap
        cap = BY_NAME[cap_name]
        limit = getattr(options, cap.dest, cap.default) + offset
        value = getattr(options, o.dest, None)
        if value is not None and value > limit:
            return (f"{o.flag} {value} is over the server's cap of {limit} ({cap.flag}): every request would be "
                    f"refused; use at most {limit}, or raise {cap.flag}")  # fmt: skip
    return None


def server_args(options: Any) -> list[str]:
    """The command-line flags of the server socklab starts, from the options that declare one."""
    args = []
    for o in OPTIONS:
        if o.server_flag:
            value = getattr(options, o.dest, o.default)
            args += [o.server_flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return args


def restarting_options() -> list[Option]:
    """The options whose change between two web-UI tests restarts the server."""
    return [o for o in OPTIONS if o.restarts_server or o.server_flag]


def starts_server(options: Any, host: str | None) -> bool:
    """Whether socklab starts the server: unless ``--server none``, or ``--server auto`` with a host given."""
    return options.server != "none" and not (options.server == "auto" and host)


def variant_of(options: Any, host: str | None) -> str:
    """The name a run goes by: the variant socklab starts, the --server-cmd's NAME, or 'external'."""
    if not starts_server(options, host):
        return "external"
    if options.server_cmd:
        return split_named_command(options.server_cmd)[0]
    return DEFAULT_VARIANT if options.server == "auto" else options.server


def run_problem(options: Any, host: str | None) -> str | None:
    """What is wrong with a run's options and target, as one line; None if nothing is.

    The same words on the command line (exit 2) and in the web UI (the swarm's message).
    """
    if host:
        try:
            parse_target(host)
        except ValueError as exc:
            return str(exc)
    if options.server_cmd:
        if host:
            return f"--server-cmd and --host {host} both name a target; drop one"
        if options.server != "auto":
            return f"--server-cmd and --server {options.server} both name a server; drop one"
        if "{port}" not in options.server_cmd:
            return "--server-cmd needs {port} where the command takes its port, e.g. 'my-server --port {port}'"
    if options.server == "none" and not host:
        return "--server none needs --host tcp://HOST:PORT of a running server"
    if options.server not in ("auto", "none") and host:
        return f"--server {options.server} and --host {host} both name a target; drop one"
    if getattr(options, "pipeline", 1) > 1 and getattr(options, "arrival_rate", 0) > 0:
        return ("--pipeline and --arrival-rate: a pipeline keeps N in flight, an open loop sends on a schedule; "
                "choose one")
    problem = validate(options) or bind_problem(options)
    if problem:
        return problem
    if starts_server(options, host) and not options.server_cmd:
        return over_server_caps(options)
    return None


WILDCARDS = ("0.0.0.0", "::")


def bind_problem(options: Any) -> str | None:
    """A --server-bind / --server-advertise the workers could not use, as one line; None if fine."""
    bind = str(getattr(options, "server_bind", "127.0.0.1") or "")
    advertise = str(getattr(options, "server_advertise", "") or "")
    for flag, value in (("--server-bind", bind), ("--server-advertise", advertise)):
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                return f"{flag} {value!r} is not an IP address; give one of this host's addresses, e.g. 127.0.0.1"
    if not bind:
        return "--server-bind needs an address, e.g. 127.0.0.1"
    if bind in WILDCARDS and not advertise:
        return (f"--server-bind {bind} listens on every interface and names none to connect to; bind the address "
                f"the load reaches, or add --server-advertise ADDR")  # fmt: skip
    if advertise in WILDCARDS:
        return f"--server-advertise {advertise} is a wildcard; give the address workers connect to"
    return None


def option_values(options: Any) -> dict[str, Any]:
    """The socklab options of a run, for run.json."""
    return {o.dest: getattr(options, o.dest, o.default) for o in OPTIONS}


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """`socklab compare --NAME VALUE`: the same options, overriding every scenario's preset."""
    for o in overridable():
        parser.add_argument(
            o.flag,
            type=o.checked_type(),
            default=None,
            choices=list(o.choices) if o.choices else None,
            help=f"{o.help}; overrides every scenario's value",
        )
    for old_name, new_name in DEPRECATED.items():  # apply_deprecated() moves their values
        parser.add_argument(f"--{old_name}", type=BY_NAME[new_name].checked_type(), default=None,
                            help=argparse.SUPPRESS)  # fmt: skip


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overridable options given on compare's command line, by locustfile name."""
    return {o.name: value for o in overridable() if (value := getattr(args, o.dest, None)) is not None}

