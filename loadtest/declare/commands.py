"""socklab's subcommands — client, compare, sweep, lab, report — with their options, each declared once.

A subcommand's option is an :class:`~loadtest.declare.settings.Option`, as every run option is; one
that several commands take (``--duration``, ``--warmup``, ``--processes``, ``--out``, ``--no-isolate``,
``--designs``) is declared once here and shared, each command saying only what differs: the word
for one of its runs (a cell, a step), its defaults, its output folder.  ``socklab``'s parser is
made from these declarations (:func:`build_parser`), and so are the docs' tables of the commands'
options (``python -m loadtest.docs``).  :func:`output_folder` is the one maker of a dated folder
under reports/.

No locust: ``socklab`` reads this in a plain process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.declare import options
from loadtest.declare.experiments import EXPERIMENTS
from loadtest.declare.scenarios import DEFAULT_SCENARIOS, DEFAULT_SWEEP, SCENARIOS, SWEEP_SCENARIOS
from loadtest.declare.settings import BY_NAME, DEFAULT_DESIGN, Option
from loadtest.declare.values import (
    design_list,
    named_command,
    parse_duration,
    positive_duration,
    rates_list,
    users_list,
)
from servers import DESIGNS, speaking
from servers.cli import OneLineParser, nonneg_int, positive_int, positive_number

REPORTS = Path("reports")
DATE_TIME = "<date-time>"  # in a folder's name, where the time it was made goes


def output_folder(given: str | Path | None, name: str) -> Path:
    """The folder given, or reports/NAME with its <date-time> filled in: every dated output folder is named here."""
    if given:
        return Path(given)
    return REPORTS / name.replace(DATE_TIME, time.strftime("%Y%m%d-%H%M%S"))


# -- the options -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandOption(Option):
    """A subcommand's option: an Option, and how argparse gathers it when it is not one value.

    Its help may say {unit} (what one of the command's runs is called), {default} (the command's
    default) and {folder} (the command's output folder); :meth:`Command.shaped` fills them in.
    """

    action: str | None = None  # "append": repeatable; "extend": several values, repeatable
    nargs: str | None = None
    metavar: str | None = None
    positional: bool = False


SWEEP_DESIGNS = ("blocking", "threaded", "selectors")  # the lesson's three; --designs for the rest

# Shared by the commands that run cells.
DESIGN_LIST = CommandOption("designs", design_list, None, "comma-separated (default: {default})")
DURATION = CommandOption("duration", positive_duration, 4.0, "measured seconds per {unit} (default {default}s)")
WARMUP = CommandOption("warmup", parse_duration, 1.0, "uncounted seconds first (default {default}s)")
PROCESSES = CommandOption(
    "processes",
    nonneg_int,
    0,
    "Locust worker processes per {unit} (default: one, and one per core again for a {unit} whose one process "
    "gave out with a core to spare; 1: one, always)",
)
OUT = CommandOption("out", Path, None, "output folder (default {folder})")
NO_ISOLATE = CommandOption("no-isolate", bool, False, "do not give each {unit} its own network namespace")

COMPARE_OPTIONS: tuple[Option, ...] = (
    DESIGN_LIST,
    CommandOption(
        "users", users_list, None, "comma-separated loads, e.g. 1,10,100 (default: each scenario's own, 10,50 for most)"
    ),
    CommandOption(
        "scenario",
        str,
        None,
        f"one or more of: {', '.join(SCENARIOS)} (default {' '.join(DEFAULT_SCENARIOS)})",
        choices=tuple(SCENARIOS),
        action="extend",
        nargs="+",
        metavar="NAME",
    ),
    DURATION,
    WARMUP,
    PROCESSES,
    OUT,
    NO_ISOLATE,
    CommandOption(
        "server-cmd",
        named_command,
        None,
        "also run every scenario against this command as the server (repeatable); socklab picks the port. "
        "Without --designs, only these commands run",
        action="append",
        metavar="NAME='COMMAND {port}'",
    ),
    CommandOption(
        "connections",
        positive_int,
        None,
        "connections per cell of a counted scenario, such as unp30 (default: the scenario's)",
    ),
    CommandOption(
        "full",
        bool,
        False,
        f"today's whole matrix: {', '.join(DEFAULT_SCENARIOS)} × every design × each "
        "scenario's loads (default without --scenario/--designs/--users: the quick lessons, ~2 min)",
    ),
    CommandOption("quiet", bool, False, "print only the report's path, failed expectations and errors (for scripts)"),
    CommandOption(
        "expect",
        str,
        [],
        "a bound on a cell's summary figures, e.g. 'io-wait/threaded: rps >= 2000; users_starved == 0'"
        " ('*' for any scenario or design); a failed one is a line and exit status 3 (repeatable)",
        action="append",
        metavar="'SCENARIO/DESIGN[/Nu]: COLUMN OP VALUE; …'",
    ),
    CommandOption("expect-file", Path, None, "expectations, one a line ('#' comments)", metavar="PATH"),
)

SWEEP_OPTIONS: tuple[Option, ...] = (
    DESIGN_LIST,
    CommandOption(
        "scenario",
        str,
        None,
        f"one or more of: {', '.join(SWEEP_SCENARIOS)} (default {' '.join(DEFAULT_SWEEP)})",
        choices=SWEEP_SCENARIOS,
        action="extend",
        nargs="+",
        metavar="NAME",
    ),
    CommandOption("rates", rates_list, None, "offered rates, req/s (default: doubling from the scenario's start rate)"),
    CommandOption("max-rate", positive_number, 12800.0, "the doubling ladder's top, req/s (default {default})"),
    CommandOption(
        "slo-p99-ms",
        positive_number,
        100.0,
        "the p99 bound (from the intended start) a step must keep, ms (default {default})",
    ),
    CommandOption("refine", nonneg_int, 2, "extra steps halving the bracket around the knee (default {default})"),
    CommandOption(
        "users", positive_int, None, "users sharing each step's schedule (default 10; every arrival a connection)"
    ),
    DURATION,
    WARMUP,
    PROCESSES,
    OUT,
    NO_ISOLATE,
)

LAB_OPTIONS: tuple[Option, ...] = (
    CommandOption(
        "names", str, None, f"experiments, or all: {', '.join(EXPERIMENTS)}", nargs="*", metavar="NAME", positional=True
    ),
    CommandOption("list", bool, False, "list the experiments: name, question, source"),
    CommandOption("seconds", positive_number, None, "measured seconds per cell (default: the experiment's)"),
    CommandOption(
        "quick",
        bool,
        False,
        "each experiment at its shortest: the arms whose verdicts "
        "show without chance, for the least time that shows them (what CI runs)",
    ),
    OUT,
)

REPORT_OPTIONS: tuple[Option, ...] = (
    CommandOption(
        "run_dirs", Path, None, "run folders (each with a run.json)", nargs="+", metavar="RUN_DIR", positional=True
    ),
    OUT,
)

CLIENT_OPTIONS: tuple[Option, ...] = (
    CommandOption("design", str, DEFAULT_DESIGN, "the design to start", choices=tuple(DESIGNS)),
    CommandOption("target", str, None, "tcp://HOST:PORT (or HOST:PORT; [::1]:PORT for IPv6) of a running server"),
    CommandOption("requests", positive_int, 2000, "requests in all, shared by the connections"),
    CommandOption("connections", positive_int, 4, "persistent connections, each from a thread of its own"),
    BY_NAME["op"],
    CommandOption("arg", nonneg_int, 0, "SLEEP ms or WORK µs"),
    BY_NAME["payload-bytes"],
)


# -- the commands ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A subcommand: its options (shared ones shaped by what this command calls a run, its defaults, its folder)."""

    name: str
    help: str
    options: tuple[Option, ...]
    unit: str = "cell"  # what one of its runs is called in its options' help
    folder: str = ""  # its output folder's name under reports/, with DATE_TIME
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own default of a shared option, by name
    said: Mapping[str, str] = field(default_factory=dict)  # a default in words, where the value does not say it
    fixed: Mapping[str, Any] = field(default_factory=dict)  # values set without an option (what a shared runner reads)
    overrides: bool = False  # takes every overridable run option, overriding each scenario's preset

    def shaped(self, option: Option) -> Option:
        """The option as this command has it: its default, and its help's {unit}, {default} and {folder}."""
        default = self.defaults.get(option.name, option.default)
        said = self.said.get(option.name) or _shown(default)
        folder = f"{REPORTS}/{self.folder}"
        text = option.help.replace("{unit}", self.unit).replace("{default}", said).replace("{folder}", folder)
        return replace(option, default=default, help=text)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("client", "start a design and exercise it with a built-in client", CLIENT_OPTIONS),
        Command(
            "compare",
            "run a matrix of designs × loads × scenarios and compare them (the main job)",
            COMPARE_OPTIONS,
            folder=f"compare-{DATE_TIME}",
            said={"designs": f"every design that answers socklab's frames, {','.join(speaking('socklab'))}"},
            overrides=True,
        ),
        Command(
            "sweep",
            "latency against offered load, open loop, for each design; finds each knee",
            SWEEP_OPTIONS,
            unit="step",
            folder=f"sweep-{DATE_TIME}",
            defaults={"designs": list(SWEEP_DESIGNS), "duration": 3.0},
            fixed={"connections": None},
            overrides=True,
        ),
        Command(
            "lab",
            "experiments from the literature, each with its claim, its source's numbers and "
            "a verdict (socklab lab --list)",
            LAB_OPTIONS,
            folder=f"lab-{DATE_TIME}",
        ),
        Command(
            "report",
            "(re)build summary.csv and report.html of runs; compare.html of several",
            REPORT_OPTIONS,
            folder=f"compare-{DATE_TIME}",
        ),
    )
}
# Old spellings that still work for one release, with a one-line notice: old name → new name.
RENAMED: dict[str, str] = {"variants": "designs", "variant": "design"}

Handler = Callable[[argparse.Namespace], int]


def build_parser(handlers: Mapping[str, Handler] | None = None) -> argparse.ArgumentParser:
    """``socklab``'s parser, made from :data:`COMMANDS`; each command's ``func`` is its handler, when given."""
    parser = OneLineParser(prog="socklab", description="socklab: measure TCP server architectures")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help)
        for option in command.options:
            add_option(p, command.shaped(option))
        if command.overrides:
            options.add_override_arguments(p)
        p.set_defaults(**command.fixed, **({"func": handlers[command.name]} if handlers else {}))
    return parser


def add_option(parser: argparse.ArgumentParser, o: Option) -> None:
    """One option's argument (and its old spelling's, if it had one)."""
    if o.type is bool:  # a switch: on when given
        parser.add_argument(o.flag, action="store_true", help=o.parser_help)
        return
    how = {
        "type": o.checked_type(),
        "choices": list(o.choices) if o.choices else None,
        "nargs": getattr(o, "nargs", None),
        "metavar": getattr(o, "metavar", None),
    }
    if getattr(o, "positional", False):
        parser.add_argument(o.dest, help=o.parser_help, **how)
        return
    parser.add_argument(o.flag, action=getattr(o, "action", None), default=o.default, help=o.parser_help, **how)
    for old in (old for old, new in RENAMED.items() if new == o.name):
        parser.add_argument(f"--{old}", action=Renamed, dest=o.dest, default=o.default, help=argparse.SUPPRESS, **how)


class Renamed(argparse.Action):
    """An old spelling: the value goes where the new one's does, with one notice line on stderr (once)."""

    told = False

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        if not self.told:
            self.told = True
            old = self.option_strings[0]
            print(f"{parser.prog}: {old} is deprecated; use --{RENAMED[old[2:]]}", file=sys.stderr)
        setattr(namespace, self.dest, values)
