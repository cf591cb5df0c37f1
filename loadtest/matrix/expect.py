"""Expectations for CI: bounds on a cell's summary figures, checked after ``socklab compare`` runs.

    socklab compare --server-cmd 'mine=./myserver --port {port}' \\
        --expect 'io-wait/mine: rps >= 2000; users_starved == 0'
    socklab compare --expect-file expectations.txt       # one expectation a line, '#' starts a comment

An expectation is ``SCENARIO/DESIGN[/USERSu]: COLUMN OP VALUE[; COLUMN OP VALUE …]``: the scenario and
the design may be ``*`` (every one); without a load it holds at every load the cell ran.  COLUMN is a
numeric column of summary.csv (docs/reports.md), OP one of ``>= <= > < == !=``, VALUE a number (``2,000``
and ``2_000`` read as 2000) or ``true``/``false``.  Like k6's thresholds and locust-plugins' ``--check-*``
options: a regression gate for your own server.

Each failed expectation is one line naming the cell, the figure, its measured value and the bound, and
``socklab compare`` then exits 3.  A malformed expectation, or one that names no cell of the matrix,
is one line and exit 2 before any cell runs.  A figure that is a lower bound (``≥``: work still in flight
when the window closed) can show that it is above a bound, never that it is below one.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.report.rules.summary_columns import SUMMARY_NAMES

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
TEXT_COLUMNS = frozenset(
    {
        "run_id",
        "scenario",
        "design",
        "user_class",
        "op",
        "failure_classes",
        "timeline",
        "lower_bound_columns",
        "counters_scope",
    }
)
CONDITION = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.column} {self.op} {show(self.value)}"


@dataclass(frozen=True)
class Expectation:
    text: str
    scenario: str
    design: str
    users: int | None
    conditions: tuple[Condition, ...]

    def matches(self, scenario: str, design: str, users: int) -> bool:
        return (
            fnmatch.fnmatchcase(scenario, self.scenario)
            and fnmatch.fnmatchcase(design, self.design)
            and (self.users is None or self.users == users)
        )


def parse(text: str) -> Expectation:
    """One expectation; ValueError says what is wrong with it, in one line."""
    where, sep, body = text.partition(":")
    if not sep or not body.strip():
        raise ValueError(
            f"--expect {text!r}: write SCENARIO/DESIGN[/USERSu]: COLUMN OP VALUE, e.g. "
            "'io-wait/threaded: rps >= 2000; users_starved == 0'"
        )
    parts = [p.strip() for p in where.strip().split("/")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"--expect {text!r}: the cell is SCENARIO/DESIGN or SCENARIO/DESIGN/USERSu ('*' for any)")
    users = None
    if len(parts) == 3:
        if not re.fullmatch(r"\d+u?", parts[2]):
            raise ValueError(f"--expect {text!r}: {parts[2]!r} is not a load; write e.g. 50u")
        users = int(parts[2].rstrip("u"))
    conditions = []
    for clause in body.split(";"):
        if not clause.strip():
            continue
        m = CONDITION.match(clause)
        if not m:
            raise ValueError(f"--expect {text!r}: {clause.strip()!r} is not COLUMN OP VALUE (OP: >= <= > < == !=)")
        column, op, value = m.groups()
        if column not in SUMMARY_NAMES or column in TEXT_COLUMNS:
            raise ValueError(
                f"--expect {text!r}: {column!r} is not a numeric column of summary.csv (docs/reports.md lists them)"
            )
        conditions.append(Condition(column, op, number(value, text)))
    if not conditions:
        raise ValueError(f"--expect {text!r}: no condition after the ':'")
    return Expectation(text.strip(), parts[0], parts[1], users, tuple(conditions))


def number(word: str, text: str) -> float:
    low = word.lower()
    if low in ("true", "false"):
        return float(low == "true")
    try:
        return float(word.replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"--expect {text!r}: {word!r} is not a number (or true/false)") from None


def read_file(path: Path) -> list[Expectation]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"--expect-file {path}: {exc.strerror or exc}") from None
    return [parse(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]


def unmatched(expectations: Iterable[Expectation], cells: Iterable[tuple[str, str, int]]) -> Expectation | None:
    """The first expectation that names no cell of the matrix."""
    cells = list(cells)
    return next((e for e in expectations if not any(e.matches(*c) for c in cells)), None)


Planned = list[tuple[str, str, int]]  # (scenario, design, users) of every cell of the matrix


def check(expectations: list[Expectation], rows: list[dict[str, Any]], planned: Planned) -> list[str]:
    """One line for each bound a cell's figures do not meet; [] when every expectation holds."""
    ran = {(str(r["scenario"]), str(r["design"]), int(r["users"])): r for r in rows}
    out = []
    for e in expectations:
        for cell in planned:
            if not e.matches(*cell):
                continue
            name = f"{cell[0]}/{cell[1]}/{cell[2]}u"
            row = ran.get(cell)
            if row is None:
                out.append(f"expectation failed: {name}: not measured, the cell did not finish ({e.text})")
                continue
            for c in e.conditions:
                problem = judge(c, row)
                if problem:
                    out.append(f"expectation failed: {name}: {problem} ({e.text})")
    return out


def judge(c: Condition, row: dict[str, Any]) -> str:
    """'' when the condition holds, else what was measured against what was wanted."""
    value = row.get(c.column)
    if isinstance(value, str):
        value = {"True": 1.0, "False": 0.0}.get(value, value)
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, int | float) or math.isnan(value):
        return f"{c.column} not measured, wanted {c}"
    lower = c.column in str(row.get("lower_bound_columns") or "").split(";")
    if lower and c.op in ("<=", "<", "==", "!="):
        return f"{c.column} ≥ {show(value)} is a lower bound (work still in flight), so {c} cannot be shown"
    if not OPERATORS[c.op](value, c.value):
        return f"{c.column} {'≥ ' if lower else '= '}{show(value)}, wanted {c}"
    return ""


def show(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0").rstrip(".")
