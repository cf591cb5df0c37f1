"""The checks are attached to their scenarios and experiments by reference: each rules module registers on the
declaration it judges, the declarations name no check, and whoever runs checks finds them through
loadtest.report.rules.judges."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from loadtest.declare.experiments import EXPERIMENTS, HEAD_OF_LINE, REUSEPORT_TAIL, ROLLING_RESTART, TIME_WAIT
from loadtest.declare.scenarios import SCENARIOS, UNP30
from loadtest.report.rules import claims, stevens, workers
from loadtest.report.rules.judges import check_of

DECLARE = Path(__file__).resolve().parent.parent / "loadtest" / "declare"


def test_every_experiment_and_unp30_has_its_check_and_no_other_scenario_has_one() -> None:
    for experiment in EXPERIMENTS.values():
        assert check_of(experiment) is not None, experiment.name
    assert check_of(UNP30) is stevens.check
    assert check_of(EXPERIMENTS["backlog"]) is claims.backlog
    assert check_of(EXPERIMENTS["accept-balance"]) is workers.accept_balance
    assert [s.name for s in SCENARIOS.values() if check_of(s)] == ["unp30"]


def test_a_declaration_takes_one_check() -> None:
    with pytest.raises(ValueError, match="unp30 has a check already"):
        UNP30.check(stevens.check)


def test_the_declarations_name_no_check() -> None:
    # One way, rules → declare: no declaration imports a rules module or names one in a string.
    for path in DECLARE.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.startswith("loadtest.report.rules")}, path.name
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [s for s in strings if re.search(r"loadtest\.report[\w.]*:\w", s)], path.name


def test_the_setups_a_check_describes_are_read_from_the_declaration() -> None:
    assert REUSEPORT_TAIL.mix_in_words() == "90 % ECHO and 10 % WORK 10 ms"
    assert REUSEPORT_TAIL.users_in_words() == "8 connect-per-request users"
    assert HEAD_OF_LINE.users_in_words() == "2 persistent users" and HEAD_OF_LINE.design == ""
    assert ROLLING_RESTART.design == "preforked-reuseport" and TIME_WAIT.design == "selectors"
    # the source's figures, declared once: the source cites them and the check sets them beside the measurement
    shared, own = REUSEPORT_TAIL.reported
    assert f"stddev {shared.figures['stddev']}" in REUSEPORT_TAIL.source
    assert f"max {own.figures['max']}" in REUSEPORT_TAIL.source
