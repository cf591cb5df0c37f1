"""What socklab makes of its options (each declared once, in :mod:`loadtest.declare.settings`).

From :data:`OPTIONS` come the Locust command-line/web-UI arguments
(:func:`add_locust_arguments`), their validation (:func:`validate`), the option dump in
``run.json`` (:func:`option_values`), the options ``socklab compare`` lets a user override for
every scenario (:func:`add_override_arguments`, :func:`overrides`), the command line of the server
socklab starts (:func:`server_args`: an option made from a server setting becomes its flag),
the web UI's list of options that restart the server, and the docs' options table
(``python -m loadtest.docs``).

This module imports neither locust nor gevent: ``socklab compare`` reads it in a plain process.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Iterator
from typing import Any

from loadtest.declare import mix
from loadtest.declare.protocols import protocol_problem
from loadtest.declare.settings import (
    ARRIVALS,
    BY_NAME,
    DEFAULT_DESIGN,
    DEPRECATED,
    OPTIONS,
    SERVER_CHOICES,
    USER_MODES,
    Option,
    parse_sysctls,
)
from loadtest.declare.target import parse_target, split_named_command
from servers import DESIGNS
from servers.config import WILDCARDS
from servers.config import flags as server_flags

__all__ = ["ARRIVALS", "BY_NAME", "DEFAULT_DESIGN", "DEPRECATED", "OPTIONS", "SERVER_CHOICES", "USER_MODES", "Option"]


def overridable() -> Iterator[Option]:
    return (o for o in OPTIONS if o.overridable)


def add_locust_arguments(parser: Any) -> None:
    """Add every option to Locust's parser.  No side effects: Locust calls this on every web-UI page load.

    On the parser itself, not a group: Locust's web UI lists only the parser's own arguments
    (those that carry include_in_web_ui), with a dropdown for choices.
    """
    for o in OPTIONS:
        if o.type is bool:  # a switch: on when given (a checkbox in the web UI)
            parser.add_argument(
                o.flag, action="store_true", default=False, help=o.parser_help, include_in_web_ui=o.web_ui
            )
            continue
        default = f" (default {o.default})" if o.default not in ("", None) else ""
        parser.add_argument(
            o.flag,
            type=o.type,
            default=o.default,
            choices=list(o.choices) if o.choices else None,
            help=o.parser_help + default,
            include_in_web_ui=o.web_ui,
        )
    for old_name, new_name in DEPRECATED.items():
        parser.add_argument(
            f"--{old_name}", type=BY_NAME[new_name].type, default=None, help=argparse.SUPPRESS, include_in_web_ui=False
        )


def apply_deprecated(options: Any) -> list[str]:
    """Old spellings given: their values go to the new names; one notice line each."""
    notices = []
    for old_name, new_name in DEPRECATED.items():
        value = getattr(options, old_name.replace("-", "_"), None)
        if value is not None:
            setattr(options, new_name.replace("-", "_"), value)
            setattr(options, old_name.replace("-", "_"), None)
            notices.append(
                f"--{old_name} is deprecated: it is now --{new_name} (the client's wait for a reply; the "
                f"server's own bound is --server-read-timeout); using --{new_name} {value:g}"
            )
    return notices


def validate(options: Any) -> str | None:
    """The first problem with the parsed options, as one line; None if there is none."""
    for o in OPTIONS:
        problem = o.problem(getattr(options, o.dest, None))
        if problem:
            return problem
    try:
        if getattr(options, "mix", ""):
            mix.parse(options.mix)
        parse_sysctls(getattr(options, "sysctl", "") or "")
    except ValueError as exc:
        return str(exc)
    return None


def over_server_caps(options: Any) -> str | None:
    """A value the started server would refuse on every request, as one line; None if none is.

    Only the op's own argument counts (a --sleep-ms is harmless in an ECHO run); the caps are the
    run's own --max-frame, --max-sleep-ms and --max-work-us.
    """
    op = str(getattr(options, "op", "ECHO")).upper()
    relevant = {"payload-bytes", "reply-bytes", {"SLEEP": "sleep-ms", "WORK": "work-us"}.get(op, "")}
    if getattr(options, "mix", ""):  # each entry of a mix against the same caps
        for e in mix.parse(options.mix, int(getattr(options, "payload_bytes", 64))):
            entry = {
                **vars(options),
                "mix": "",
                "op": e.op,
                "payload_bytes": e.payload,
                "reply_bytes": e.reply,
                "sleep_ms": e.arg,
                "work_us": e.arg,
            }
            problem = over_server_caps(argparse.Namespace(**entry))
            if problem:
                return f"--mix entry {e.op}: {problem}"
        return None
    for o in OPTIONS:
        if o.cap is None or o.name not in relevant:
            continue
        cap_name, offset = o.cap
        cap = BY_NAME[cap_name]
        limit = getattr(options, cap.dest, cap.default) + offset
        value = getattr(options, o.dest, None)
        if value is not None and value > limit:
            return (
                f"{o.flag} {value} is over the server's cap of {limit} ({cap.flag}): every request would be "
                f"refused; use at most {limit}, or raise {cap.flag}"
            )
    return None


def server_args(options: Any, design: str = "") -> list[str]:
    """The command-line flags of the server socklab starts, from the options made from its settings.  A setting
    left at its default takes the design's own, if it has one (the seed's listen(10))."""
    own = dict(DESIGNS[design].defaults) if design in DESIGNS else {}
    values = {o.server_setting: getattr(options, o.dest, o.default) for o in OPTIONS if o.server_setting}
    for name, value in values.items():
        if name in own and value == BY_NAME_SETTING[name].default:
            values[name] = own[name]
    return server_flags(**values)


BY_NAME_SETTING = {o.server_setting: o for o in OPTIONS if o.server_setting}


def restarting_options() -> list[Option]:
    """The options whose change between two web-UI tests restarts the server (each server setting's does)."""
    return [o for o in OPTIONS if o.restarts_server]


def starts_server(options: Any, host: str | None) -> bool:
    """Whether socklab starts the server: unless ``--server none``, or ``--server auto`` with a host given."""
    return options.server != "none" and not (options.server == "auto" and host)


def design_of(options: Any, host: str | None) -> str:
    """The name a run goes by: the design socklab starts, the --server-cmd's NAME, or 'external'."""
    if not starts_server(options, host):
        return "external"
    if options.server_cmd:
        return split_named_command(options.server_cmd)[0]
    return DEFAULT_DESIGN if options.server == "auto" else options.server


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
    if getattr(options, "pipeline", 1) > 1 and getattr(options, "mix", ""):
        return "--pipeline and --mix: a pipeline repeats one request; drop one"
    if getattr(options, "pipeline", 1) > 1 and getattr(options, "arrival_rate", 0) > 0:
        return (
            "--pipeline and --arrival-rate: a pipeline keeps N in flight, an open loop sends on a schedule; choose one"
        )
    pid = getattr(options, "server_pid", 0)
    if pid and starts_server(options, host):
        return "--server-pid names a server socklab did not start; use it with --server none --host tcp://HOST:PORT"
    if pid and not os.path.exists(f"/proc/{pid}"):
        return f"--server-pid {pid}: no such process on this host; give the pid of the server at --host"
    problem = validate(options) or bind_problem(options) or protocol_problem(options)
    if problem:
        return problem
    if starts_server(options, host) and not options.server_cmd:
        return over_server_caps(options)
    return None


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
        return (
            f"--server-bind {bind} listens on every interface and names none to connect to; bind the address "
            f"the load reaches, or add --server-advertise ADDR"
        )
    if advertise and advertise in WILDCARDS:
        return f"--server-advertise {advertise} is a wildcard; give the address workers connect to"
    return None


def option_values(options: Any) -> dict[str, Any]:
    """The socklab options of a run, for run.json."""
    return {o.dest: getattr(options, o.dest, o.default) for o in OPTIONS}


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """`socklab compare --NAME VALUE`: the same options, overriding every scenario's preset."""
    for o in overridable():
        if o.type is bool:
            parser.add_argument(
                o.flag, action="store_const", const=True, default=None, help=f"{o.parser_help}; for every scenario"
            )
            continue
        parser.add_argument(
            o.flag,
            type=o.checked_type(),
            default=None,
            choices=list(o.choices) if o.choices else None,
            help=f"{o.parser_help}; overrides every scenario's value",
        )
    for old_name, new_name in DEPRECATED.items():  # apply_deprecated() moves their values
        parser.add_argument(
            f"--{old_name}", type=BY_NAME[new_name].checked_type(), default=None, help=argparse.SUPPRESS
        )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overridable options given on compare's command line, by locustfile name."""
    return {o.name: value for o in overridable() if (value := getattr(args, o.dest, None)) is not None}
