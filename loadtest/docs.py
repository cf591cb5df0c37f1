"""The tables of the docs, generated from the declarations they describe.

    python -m loadtest.docs          # rewrite every generated table in README.md and docs/*.md
    python -m loadtest.docs --check  # exit 1 naming each table that differs from the code

A generated table sits between two markers in a Markdown file::

    <!-- generated: locust-options -->
    | option | default | meaning |
    …
    <!-- end generated -->

and is rebuilt from the code: socklab's options from :data:`loadtest.declare.options.OPTIONS`, the
commands' options from :mod:`loadtest.declare.commands`, the files' columns from :mod:`loadtest.declare.columns`.
A documented default, choice, option or column can then not drift from the code:
``tests/test_docs.py`` fails when a file is not what this module writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"(<!-- generated: ([a-z0-9-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A Markdown table: the header, its rule, a line per row (cells already escaped where they need it)."""
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _default(value: object) -> str:
    if value in ("", None):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"`{value}` ({value:,})"
    return f"`{value}`"


def locust_options() -> str:
    """Every socklab option of ``locust -f loadtest/locustfile.py`` (and of the web UI)."""
    from loadtest.declare.options import OPTIONS

    rows = []
    for o in OPTIONS:
        meaning = o.help + (f" (the server's `{o.server_flag}`)" if o.server_flag else "")
        if o.choices:
            meaning += f"; one of {', '.join(f'`{c}`' for c in o.choices)}"
        if not o.web_ui:
            meaning += " (not in the web UI)"
        rows.append((f"`{o.flag}`", _default(o.default), _cell(meaning)))
    return _table(("option", "default", "meaning"), rows)


def parser_table(parser: argparse.ArgumentParser) -> str:
    """A command's options, from its own argparse parser."""
    rows = []
    for action in parser._actions:  # argparse keeps no public list of them
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        default = "" if action.default in (None, False) or isinstance(action.default, list) else action.default
        meaning = re.sub(r"\s*\(default [^)]*\)", "", (action.help or "").replace("%%", "%"))
        if action.choices and len(action.choices) <= 12 and "one of" not in meaning:
            meaning += f"; one of {', '.join(f'`{c}`' for c in action.choices)}"
        rows.append((f"`{', '.join(action.option_strings)}`", _default(default), _cell(meaning)))
    return _table(("option", "default", "meaning"), rows)


def server_options() -> str:
    """``python -m servers DESIGN``'s options."""
    from servers.cli import build_parser

    return parser_table(build_parser())


def subcommand(name: str) -> Callable[[], str]:
    """``socklab NAME``'s options, from their declarations (the parser loadtest.declare.commands makes of them)."""

    def table() -> str:
        from loadtest.declare.commands import build_parser

        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return parser_table(sub.choices[name])

    return table


def column_table(which: str, with_source: bool) -> Callable[[], str]:
    """A file's columns, from loadtest.declare.columns (summary.csv's beside their computations, in
    loadtest.report.rules.summary_columns)."""

    def table() -> str:
        from loadtest.declare import columns, kernel
        from loadtest.report.rules import summary_columns

        head = ("column", "unit", "meaning", "source")[: 4 if with_source else 3]
        module = summary_columns if which == "SUMMARY" else kernel if which == "KERNEL_COLUMNS" else columns
        rows = (
            [_cell(x) for x in (f"`{c.name}`", c.unit, c.meaning, c.source)[: len(head)]]
            for c in getattr(module, which)
        )
        return _table(head, rows)

    return table


def designs() -> str:
    """The registry: each design's two parts and the traits they give it."""
    from servers import DESIGNS, design_class

    rows = []
    for name, design in DESIGNS.items():
        cls = design_class(name)
        traits = ", ".join(t for t, on in cls.traits().items() if on and t != "one_accept_queue")
        if not cls.one_accept_queue:
            traits += ", one accept queue per worker"
        rows.append(
            (f"`{name}`", cls.model, cls.loop, traits.strip(", ") or "—", cls.stevens or "", _cell(design.description))
        )
    return _table(("design", "process model", "connection loop", "traits", "Stevens", "what it is"), rows)


def scenarios() -> str:
    """The scenarios of socklab compare."""
    from loadtest.declare.scenarios import DEFAULT_SCENARIOS, SCENARIOS
    from loadtest.report.rules.judges import check_of

    rows = []
    for s in SCENARIOS.values():
        presets = ", ".join(f"`--{k} {v}`" for k, v in s.options.items())
        loads = f"{s.connections:,} connections" if s.connections else " and ".join(f"{u} users" for u in s.users)
        extra = [
            x
            for x in (
                " (--full)" if s.name in DEFAULT_SCENARIOS else "",
                f"; sweep from {s.sweep_start:g} req/s" if s.sweep_start else "",
                "; checked" if check_of(s) else "",
            )
            if x
        ]
        rows.append(
            (f"`{s.name}`{''.join(extra)}", f"{s.user_class}, {presets}", loads, _cell(s.question), _cell(s.expect))
        )
    return _table(("scenario", "user class, presets", "loads", "question", "what you should see"), rows)


def lessons() -> str:
    """socklab compare's default: the quick lessons."""
    from loadtest.declare.scenarios import QUICK

    rows = (
        (f"`{lesson.scenario}`", ", ".join(lesson.designs), ", ".join(map(str, lesson.users)), _cell(lesson.shows))
        for lesson in QUICK
    )
    return _table(("scenario", "designs", "users", "what it shows"), rows)


def experiments() -> str:
    """socklab lab's experiments: question, claim, source, arms."""
    from loadtest.declare.experiments import EXPERIMENTS

    rows = []
    for e in EXPERIMENTS.values():
        arms = "; ".join(
            f"{a.label} ({a.design}, {a.users})" if a.label != a.design else f"{a.label} ({a.users})" for a in e.arms
        )
        rows.append((f"`{e.name}`", _cell(e.question), _cell(e.claim), _cell(e.source), _cell(arms)))
    return _table(("experiment", "question", "claim", "source", "arms (design, users)"), rows)


TABLES: dict[str, Callable[[], str]] = {
    "lab-options": subcommand("lab"),
    "lessons": lessons,
    "experiments": experiments,
    "locust-options": locust_options,
    "server-options": server_options,
    "compare-options": subcommand("compare"),
    "sweep-options": subcommand("sweep"),
    "designs": designs,
    "scenarios": scenarios,
    "monitor-columns": column_table("MONITOR", with_source=True),
    "summary-columns": column_table("SUMMARY", with_source=False),
    "users-columns": column_table("USERS", with_source=False),
    "load-process-columns": column_table("LOAD_PROCESSES", with_source=False),
    "kernel-columns": column_table("KERNEL_COLUMNS", with_source=True),
}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str) -> str:
    """The text with every generated table rebuilt; an unknown table name is an error."""

    def table(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise KeyError(f"unknown generated table {name!r}; known: {', '.join(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)

    return MARKER.sub(table, text)


def stale() -> list[str]:
    """'FILE: table NAME' for every generated table that differs from what the code says now."""
    out = []
    for path in documents():
        text = path.read_text()
        fresh = render(text)
        if fresh != text:
            old = {m.group(2): m.group(3) for m in MARKER.finditer(text)}
            new = {m.group(2): m.group(3) for m in MARKER.finditer(fresh)}
            out += [f"{path.relative_to(ROOT)}: table {name}" for name in old if old[name] != new.get(name)]
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        problems = stale()
        for p in problems:
            print(f"{p} differs from the code; run python -m loadtest.docs", file=sys.stderr)
        return 1 if problems else 0
    if args:
        print("usage: python -m loadtest.docs [--check]", file=sys.stderr)
        return 2
    for path in documents():
        text = path.read_text()
        fresh = render(text)
        if fresh != text:
            path.write_text(fresh)
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
