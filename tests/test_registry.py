"""Every registered design runs through the server and Locust suites without being listed anywhere else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from servers import DESIGNS
from tests.helpers import DESIGNS as SUITE_DESIGNS

ROOT = Path(__file__).resolve().parent.parent
# PYTHONPATH: the Locust tests run from a temporary folder, and the server process must import the probe.
PROBE = {"SOCKLAB_DESIGNS": "probe=tests.probe_design:ProbeServer", "PYTHONPATH": str(ROOT)}


def pytest_run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout


def design_tests(collected: str, designs: list[str]) -> dict[str, set[str]]:
    """Test names (parameters other than the design blanked out) that run against each design."""
    out: dict[str, set[str]] = {v: set() for v in designs}
    for line in collected.splitlines():
        m = re.match(r"(tests/\S+?::\S+?)\[(.*)\]$", line.strip())
        if not m:
            continue
        params = f"-{m.group(2)}-"
        for v in sorted(designs, key=len, reverse=True):  # longest first: "preforked-reuseport" before "preforked"
            if f"-{v}-" in params:
                out[v].add(m.group(1) + "[" + params.replace(f"-{v}-", "-*-", 1).strip("-") + "]")
                break
    return out


def test_the_suites_iterate_the_registry() -> None:
    assert [d for d in DESIGNS if DESIGNS[d].protocol == "socklab"] == SUITE_DESIGNS
    assert set(DESIGNS) - set(SUITE_DESIGNS) == {"seed"}  # the one-shot seed: tests/test_protocols.py


def test_a_new_registry_line_is_covered_by_both_suites() -> None:
    collected = pytest_run("--collect-only", "-q", "tests/test_servers.py", "tests/test_locust.py", env=PROBE)
    per_design = design_tests(collected, [*DESIGNS, "probe"])
    for design in SUITE_DESIGNS:
        # The probe runs every design-parametrized test any registered design runs.
        assert per_design[design] == per_design["probe"], design
    probe = per_design["probe"]
    assert sum(t.startswith("tests/test_servers.py") for t in probe) >= 20
    assert any("test_each_user_class_against_each_design" in t for t in probe)  # every user class on it


def test_the_probe_design_really_runs() -> None:
    # Not just collected: a few of the probe's server and Locust tests pass, started by name.
    out = pytest_run(
        "-q",
        "tests/test_servers.py",
        "tests/test_locust.py",
        "-k",
        "probe and (echo_sleep_work or garbage or each_user_class)",
        env=PROBE,
        timeout=180,
    )
    passed = int(re.search(r"(\d+) passed", out).group(1))  # type: ignore[union-attr]
    assert passed >= 3, out[-2000:]


def test_a_design_composed_only_here_runs_n_event_loops_on_one_listener() -> None:
    # nginx's model without reuseport — N pre-forked processes, each a selectors loop on the shared
    # listener — is one registry line of two existing parts; here it is registered only in this test.
    import threading
    import time

    import psutil

    from loadtest.matrix.processes import ServerProcess
    from servers.protocol import Op
    from tests.helpers import call, connect

    env = {"SOCKLAB_DESIGNS": "probe-nginx=preforked+selectors"}
    cmd = [sys.executable, "-m", "servers", "probe-nginx", "--port", "0", "--workers", "2"]
    with ServerProcess.launch(cmd, "probe-nginx", env=env) as server:
        assert server.traits["event_loop"] and server.traits["uses_processes"] and not server.traits["pooled"]
        assert server.workers == 2
        assert len(psutil.Process(server.pid).children()) == 2
        # Ten SLEEP 300 ms at once on two processes: each loop serves many connections, not one.
        results: list[tuple[int, bytes]] = []

        def one() -> None:
            with connect(server.port) as sock:
                results.append(call(sock, Op.SLEEP, 300, b"z"))

        started = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - started < 0.9
        assert results == [(0, b"z")] * 10
    assert server.stopped is not None and server.stopped["requests"] == 10  # summed over both children


def test_a_model_and_loop_that_do_not_compose_are_refused_in_one_line() -> None:
    import pytest

    from servers import compose

    with pytest.raises(ValueError, match="runs with the blocking loop, not selectors"):
        compose("nope", "thread-per-connection+selectors")
    with pytest.raises(ValueError, match="is not MODEL\\+LOOP"):
        compose("nope", "single+epoll")


def test_a_design_imports_only_the_loop_it_runs() -> None:
    # asyncio's loop brings asyncio and ssl (~7 MB of RSS): a blocking or selectors server must not carry
    # them into its memory figures (an audit saw every server's peak RSS rise from 17.3 to 25.2 MB).
    code = (
        "import sys; from servers import design_class; design_class('blocking'); design_class('selectors');"
        "print('asyncio' in sys.modules, 'ssl' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr
