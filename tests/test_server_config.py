"""Each server setting is declared once, on ServerConfig (servers.config): the server's parser, the harness's
options for the server it starts, the started server's command line and the traits are made from the parts."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from loadtest.declare import options as opts
from servers import DESIGNS, design_class
from servers.cli import build_parser
from servers.config import SETTINGS, ServerConfig, flags

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_parser_has_a_flag_per_field_and_makes_the_config() -> None:
    parser = build_parser()
    by_flag = {s: a for a in parser._actions for s in a.option_strings}
    for f in fields(ServerConfig):
        action = by_flag[f.metadata["flag"]]
        assert action.dest == f.name and action.default == f.default and action.help == f.metadata["help"]
    args = parser.parse_args(["blocking", "--backlog", "7", "--max-frame", "100", "--retire-worker-after", "1.5"])
    config = ServerConfig(**{name: getattr(args, name) for name in SETTINGS})
    assert (config.backlog, config.limits.max_frame, config.retire_after) == (7, 100, 1.5)


@pytest.mark.parametrize(("flag", "bad"), [("--backlog", "-1"), ("--port", "70000"), ("--workers", "0")])
def test_a_bad_value_is_refused_by_the_settings_check(flag: str, bad: str) -> None:
    parser = build_parser()
    parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=re.escape(f"argument {flag}: invalid")):
        parser.parse_args(["blocking", flag, bad])


def test_the_harness_options_for_the_server_are_made_from_its_settings() -> None:
    made = [o for o in opts.OPTIONS if o.server_setting]
    assert {o.server_setting for o in made} == set(SETTINGS) - {"host", "port", "conn_log"}
    for o in made:
        s = SETTINGS[o.server_setting]  # type: ignore[index]
        assert (o.server_flag, o.type, o.default) == (s.flag, s.type, s.default), o.name
        assert o.minimum == (s.check.minimum if s.check else None) and o.restarts_server, o.name
    assert opts.BY_NAME["server-workers"].server_flag == "--workers"
    namespace = argparse.Namespace(**{o.dest: o.default for o in opts.OPTIONS})
    assert opts.server_args(namespace) == flags(**{o.server_setting: o.default for o in made})  # type: ignore[misc]
    assert flags(host="::1", port=0, epoll_exclusive=False, read_timeout=2.5) == [
        "--host",
        "::1",
        "--port",
        "0",
        "--read-timeout",
        "2.5",
    ]


def test_each_server_flag_is_spelled_in_one_module() -> None:
    # --host, --port and --workers are also options of socklab's own commands (the target, the monitor's
    # server port, the testbed's worker hosts): those are theirs.
    for setting in (s for s in SETTINGS.values() if s.flag not in ("--host", "--port", "--workers")):
        quoted = re.compile(rf"""["']{re.escape(setting.flag)}["']""")
        spelled = [
            p for pkg in ("loadtest", "servers") for p in (ROOT / pkg).rglob("*.py") if quoted.search(p.read_text())
        ]
        assert [p.relative_to(ROOT).as_posix() for p in spelled] == ["servers/config.py"], setting.flag


def test_traits_take_both_parts_and_a_class_written_by_hand_alike() -> None:
    from servers.loops.blocking import BlockingLoop
    from servers.models.threads import ThreadPerConnection

    class ByHand(ThreadPerConnection, BlockingLoop):
        design = "by-hand"

    assert ByHand.traits() == design_class("threaded").traits() and ByHand.stevens == "serv06"
    for name in DESIGNS:
        cls = design_class(name)
        assert cls.pooled == (cls.has_workers and not cls.event_loop), name
        assert not (cls.event_loop and cls.stevens), name  # chapter 30's servers all block
