"""The run options' rules, pure: each problem a run is refused for, the server flags the options
declare, the deprecated spelling, compare's overrides.  (Running with them is tested in test_locust.py.)"""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest

from loadtest.declare import options as opts


def parsed(**given: Any) -> SimpleNamespace:
    values = {"read_timeout": None, **{o.dest: o.default for o in opts.OPTIONS}, **given}
    return SimpleNamespace(**values)


# -- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "host", "problem"),
    [
        ({}, None, None),
        ({"payload_bytes": -1}, None, "--payload-bytes must be >= 0"),
        ({"connect_timeout": 0.0}, None, "--connect-timeout must be > 0"),
        ({"server": "none"}, None, "--server none needs --host"),
        ({"server": "blocking"}, "tcp://127.0.0.1:1", "both name a target"),
        ({"server_cmd": "srv --port 1"}, None, "--server-cmd needs {port}"),
        ({"server_cmd": "srv {port}"}, "tcp://127.0.0.1:1", "--server-cmd and --host"),
        (
            {"op": "SLEEP", "sleep_ms": 20_000},
            None,
            "--sleep-ms 20000 is over the server's cap of 10000 "
            "(--max-sleep-ms): every request would be refused; use at most 10000, or raise --max-sleep-ms",
        ),
        ({"op": "SLEEP", "sleep_ms": 20_000, "max_sleep_ms": 30_000}, None, None),  # the cap raised with it
        ({"op": "ECHO", "sleep_ms": 20_000}, None, None),  # only the op's own argument counts
        (
            {"payload_bytes": 2_000_000, "max_frame": 1_000_000},
            None,
            "--payload-bytes 2000000 is over the server's cap of 999991 (--max-frame)",
        ),
        ({"server_bind": "0.0.0.0"}, None, "add --server-advertise ADDR"),
        ({"pipeline": 4, "mix": "ECHO:9,WORK=10:1"}, None, "--pipeline and --mix"),
        ({"mix": "PING:1"}, None, "'PING' is not an op"),
        ({}, "http://x:1", "use tcp://HOST:PORT"),
    ],
)
def test_run_problem(given: dict[str, Any], host: str | None, problem: str | None) -> None:
    found = opts.run_problem(parsed(**given), host)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_server_flags_come_from_the_options_that_declare_them() -> None:
    args = opts.server_args(
        parsed(backlog=7, server_workers=3, max_sleep_ms=30_000, server_read_timeout=2.5, max_requests=1)
    )
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs == {
        "--backlog": "7",
        "--workers": "3",
        "--max-connections": "2048",
        "--max-frame": "1048576",
        "--max-sleep-ms": "30000",
        "--max-work-us": "1000000",
        "--read-timeout": "2.5",
        "--max-requests": "1",
        "--retire-worker-after": "0",
        "--conn-log-cap": "100000",
    }
    switched = opts.server_args(parsed(epoll_exclusive=True))  # a switch is its flag alone, when on
    assert "--epoll-exclusive" in switched and "--epoll-exclusive" not in args
    from servers.cli import build_parser  # every flag socklab passes is one the server has

    known = {s for a in build_parser()._actions for s in a.option_strings}
    assert set(pairs) <= known
    assert {o.name for o in opts.restarting_options()} >= {"server", "server-cmd", "backlog", "max-frame"}


def test_the_old_read_timeout_spelling_moves_to_reply_timeout() -> None:
    options = parsed(read_timeout=3.0)
    (notice,) = opts.apply_deprecated(options)
    assert options.reply_timeout == 3.0 and options.read_timeout is None
    assert "--read-timeout is deprecated" in notice and "--server-read-timeout" in notice
    assert opts.apply_deprecated(parsed()) == []


def test_compare_overrides_check_their_rules() -> None:
    parser = argparse.ArgumentParser()
    opts.add_override_arguments(parser)
    assert opts.overrides(parser.parse_args(["--backlog", "3"])) == {"backlog": 3}
    with pytest.raises(SystemExit):
        parser.parse_args(["--sleep-ms", "-1"])
