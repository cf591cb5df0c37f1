"""The values socklab's subcommands take, each a parser whose name argparse shows in its one-line refusal.

A parser raises ValueError on a bad value; its ``__name__`` says what was expected (``duration (e.g. 10s,
1m)``), so ``--duration x`` answers in one line what to give instead.

No locust: ``socklab`` reads this in a plain process.
"""

from __future__ import annotations

from servers import DESIGNS


def parse_duration(text: str) -> float:
    """'10s', '2m', '1.5' (seconds) → seconds."""
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    value = float(text[:-1] if scale else text)
    if value < 0:
        raise ValueError
    return value * (scale or 1)


parse_duration.__name__ = "duration (e.g. 10s, 1m)"


def positive_duration(text: str) -> float:
    """A measured window: 0 would reach Locust as `-t 0s`, which means no time limit at all."""
    value = parse_duration(text)
    if value <= 0:
        raise ValueError
    return value


positive_duration.__name__ = "duration > 0 (e.g. 10s, 1m)"


def named_command(text: str) -> tuple[str, str]:
    """--server-cmd NAME='COMMAND … {port} …' → (NAME, COMMAND)."""
    name, sep, command = text.partition("=")
    if not sep or not name or " " in name or "{port}" not in command or name in DESIGNS:
        raise ValueError
    return name, command.strip()


named_command.__name__ = "NAME='COMMAND … {port} …' (a name that is not a registered design)"


def design_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in DESIGNS]
    if unknown or not names:
        raise ValueError
    return names


design_list.__name__ = f"design list (from {', '.join(DESIGNS)})"


def users_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise ValueError
    return values


users_list.__name__ = "users list (e.g. 1,10,100)"


def rates_list(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or min(values) <= 0 or values != sorted(values):
        raise ValueError
    return values


rates_list.__name__ = "rates list (increasing, > 0, e.g. 100,200,400)"
