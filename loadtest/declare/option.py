"""One socklab option, declared: :class:`Option` (what the parser, validation, run.json, compare's overrides and
the docs read), and :func:`server_option`, a setting of the started server offered as an option.

The options themselves are listed in :mod:`loadtest.declare.settings` (and the protocols' in
:mod:`loadtest.declare.protocols`).  No locust, no gevent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servers.config import SETTINGS, checked


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
    server_setting: str | None = None  # the ServerConfig field (servers.config) it sets on the started server
    restarts_server: bool = False  # a change between two web-UI tests restarts the server (server settings do)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def server_flag(self) -> str | None:
        """The flag of ``python -m servers`` this option becomes, as the server declares it."""
        return SETTINGS[self.server_setting].flag if self.server_setting else None

    @property
    def parser_help(self) -> str:
        """The help as argparse wants it: argparse %-formats help, so a literal "%" is written "%%"."""
        return self.help.replace("%", "%%")

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
        rule = ">" if self.exclusive_minimum else ">="
        name = self.type.__name__
        name = f"{name} {rule} {self.minimum:g}" if self.minimum is not None else name
        return checked(self.type, lambda value: self.problem(value) is None, name)


def server_option(setting: str, help: str, name: str = "", overridable: bool = True) -> Option:
    """A setting of the server socklab starts, as a socklab option: its flag, type, default and rule are the
    server's own (servers.config); socklab says what it means for a run, and names it after the flag
    unless that word means something else here (socklab has workers of its own)."""
    s = SETTINGS[setting]
    minimum, exclusive = (s.check.minimum, s.check.exclusive) if s.check else (None, False)
    return Option(
        name or s.flag.removeprefix("--"),
        s.type,
        s.default,
        help,
        overridable=overridable,
        minimum=minimum,
        exclusive_minimum=exclusive,
        server_setting=setting,
        restarts_server=True,
    )
