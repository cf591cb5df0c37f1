"""The docs' tables of options (and, as they are declared, columns) are the code's."""

from __future__ import annotations

from loadtest import docs


def test_every_generated_table_is_what_the_code_says() -> None:
    # README.md and docs/*.md: python -m loadtest.docs rewrites them.
    assert docs.stale() == []


def test_the_tables_hold_the_declared_defaults() -> None:
    from loadtest.options import OPTIONS
    from servers.base import DEFAULT_MAX_CONNECTIONS

    text = "".join(p.read_text() for p in docs.documents())
    assert f"| `--max-connections` | `{DEFAULT_MAX_CONNECTIONS}` |" in text  # the server's, and socklab's
    for option in OPTIONS:
        assert f"| `{option.flag}` |" in text, option.flag
