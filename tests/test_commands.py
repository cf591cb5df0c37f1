"""socklab's subcommands as declared (loadtest.declare.commands): the options they share, the old spellings
of --designs and --design, the one maker of a dated output folder, the user modes' one declaration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.declare import commands
from loadtest.declare.commands import COMMANDS, DURATION, NO_ISOLATE, OUT, PROCESSES, WARMUP, build_parser


def test_the_matrix_commands_share_one_declaration_of_each_common_option() -> None:
    for option in (DURATION, WARMUP, PROCESSES, OUT, NO_ISOLATE):
        assert option in COMMANDS["compare"].options and option in COMMANDS["sweep"].options, option.name
    assert OUT in COMMANDS["lab"].options and OUT in COMMANDS["report"].options
    for command in COMMANDS.values():  # each option once per command
        names = [o.name for o in command.options]
        assert len(names) == len(set(names)), command.name
    # Each command shapes the shared declaration: its own default, its own word for a run, its own folder.
    compare, sweep = build_parser().parse_args(["compare"]), build_parser().parse_args(["sweep"])
    assert (compare.duration, sweep.duration, compare.warmup, sweep.warmup) == (4.0, 3.0, 1.0, 1.0)
    assert "measured seconds per step (default 3s)" in COMMANDS["sweep"].shaped(DURATION).help
    assert "reports/lab-<date-time>" in COMMANDS["lab"].shaped(OUT).help


@pytest.mark.parametrize(
    ("argv", "dest", "value", "new"),
    [
        (["compare", "--variants", "blocking,threaded"], "designs", ["blocking", "threaded"], "--designs"),
        (["sweep", "--variants", "selectors"], "designs", ["selectors"], "--designs"),
        (["client", "--variant", "threaded"], "design", "threaded", "--design"),
    ],
)
def test_the_old_spellings_still_work_with_one_notice(
    argv: list[str], dest: str, value: object, new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = argv[1]
    args = build_parser().parse_args([*argv, old, argv[2]])  # given twice: still one notice
    assert getattr(args, dest) == value
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"socklab {argv[0]}: {old} is deprecated; use {new}"]
    same = build_parser().parse_args([argv[0], new, argv[2]])  # the new flag: the same value, no notice
    assert getattr(same, dest) == value and capsys.readouterr().err == ""


def test_an_old_spelling_misused_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "compare", "--variants", "nosuch"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--variants" in lines[0], done.stderr


def test_every_dated_output_folder_comes_from_one_maker() -> None:
    assert commands.output_folder("given/here", "x") == Path("given/here")
    made = commands.output_folder(None, COMMANDS["compare"].folder)
    assert made.parent == Path("reports") and re.fullmatch(r"compare-\d{8}-\d{6}", made.name), made
    assert re.fullmatch(r"\d{8}-\d{6}-blocking", commands.output_folder("", f"{commands.DATE_TIME}-blocking").name)
    root = Path(__file__).resolve().parent.parent
    stamps = [p for p in (root / "loadtest").rglob("*.py") if "%Y%m%d-%H%M%S" in p.read_text()]
    assert stamps == [root / "loadtest" / "declare" / "commands.py"]


def test_each_user_mode_has_its_user_class() -> None:
    # In a process of its own: importing the User classes imports locust, which patches with gevent.
    code = (
        "from loadtest.declare.settings import USER_MODES; from loadtest.glue.users import USER_CLASSES; "
        "assert tuple(USER_CLASSES) == USER_MODES, (tuple(USER_CLASSES), USER_MODES); "
        "assert all(cls.mode == mode for mode, cls in USER_CLASSES.items())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
