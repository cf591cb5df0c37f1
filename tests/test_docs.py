"""The docs' tables of options (and, as they are declared, columns) are the code's."""

from __future__ import annotations

from loadtest import docs


def test_every_generated_table_is_what_the_code_says() -> None:
    # README.md and docs/*.md: python -m loadtest.docs rewrites them.
    assert docs.stale() == []


def test_the_tables_hold_the_declared_defaults() -> None:
    from loadtest.declare.options import OPTIONS
    from servers.base import DEFAULT_MAX_CONNECTIONS

    text = "".join(p.read_text() for p in docs.documents())
    assert f"| `--max-connections` | `{DEFAULT_MAX_CONNECTIONS}` |" in text  # the server's, and socklab's
    for option in OPTIONS:
        assert f"| `{option.flag}` |" in text, option.flag


def test_every_parser_prints_its_help() -> None:
    # argparse %-formats help: a declared help with a literal "%" must reach it escaped, or --help crashes.
    import argparse

    from loadtest.cli import build_parser
    from loadtest.declare.options import add_locust_arguments
    from loadtest.declare.settings import Option
    from servers.cli import build_parser as server_parser

    socklab = build_parser()
    commands = next(a for a in socklab._actions if isinstance(a, argparse._SubParsersAction)).choices
    locust = argparse.ArgumentParser()

    class LocustParser:  # Locust's parser takes include_in_web_ui; argparse's does not
        def add_argument(self, *args: object, include_in_web_ui: bool = True, **kwargs: object) -> object:
            return locust.add_argument(*args, **kwargs)  # type: ignore[arg-type]

    add_locust_arguments(LocustParser())  # type: ignore[arg-type]
    for parser in (socklab, *commands.values(), server_parser(), locust):
        assert "--" in parser.format_help(), parser.prog
    sample = argparse.ArgumentParser()
    sample.add_argument("--share", help=Option("share", int, 50, "50 % of it").parser_help)
    assert "50 % of it" in sample.format_help()  # as written, not a crash


def test_the_readmes_map_is_the_tree() -> None:
    # Every module is on the map, under its own folder, and the map names no module that is gone.
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("## The map", 1)[1].split("```", 2)[1]
    folders: list[tuple[int, str]] = []  # (indent, folder) of the folders open at this line
    on_map: set[str] = set()
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        names = re.split(r"\s{2,}", line.strip())[0].split()  # the names, before the description's gap
        folders = [(i, f) for i, f in folders if i < indent]
        if names and names[0].endswith("/"):
            folders.append((indent, names[0]))
            continue
        here = "".join(f for _, f in folders)
        on_map |= {here + name for name in names if name.endswith(".py") and not name.startswith("__")}
    in_tree = {
        str(p.relative_to(root))
        for package in ("loadtest", "servers")
        for p in (root / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and p.parent.name not in ("models", "loops")
    }
    assert in_tree - on_map == set(), "modules missing from the README's map"
    assert {m for m in on_map if m.startswith(("loadtest/", "servers/"))} - in_tree == set(), (
        "the map names gone modules"
    )
