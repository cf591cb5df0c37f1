"""socklab lab: every experiment end to end at its shortest (socklab lab all --quick), its verdicts what this
kernel does; an arm the machine cannot run says so; a sysctl outside a private namespace is refused."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.declare.experiments import EXPERIMENTS, Arm, unavailable
from loadtest.hosts.isolate import can_isolate
from tests.helpers import run_locust

ISOLATION, WHY_NOT = can_isolate()
STATES = ("holds here: ", "does not hold here: ", "differs: ", "not available here: ")
# The claims that hold on this kernel (6.x, 2 cores) at the quick lengths, experiment by experiment.
HOLD = {
    "backlog": ("B + 1 complete handshakes wait", "held in SYN_SENT", "re-send their SYN on the kernel's schedule"),
    "abort-on-overflow": ("refuses (RST) instead of dropping", "so clients fail fast instead of waiting"),
    "syn-cookies": ("with 0 those SYNs are dropped and retried", "with 2 every SYN gets a cookie"),
    "time-wait": (
        "the side that closes first holds TIME_WAIT",
        "SO_LINGER 0 closes with a RST",
        "the ephemeral ports run out",
        "tcp_tw_reuse=1 lets a new connection",
    ),
    "reuseport-tail": (),  # a tail statistic: measured and judged, not asserted here
    "accept-balance": (
        "a blocking accept() hands connections out in turn",
        "EPOLLEXCLUSIVE wakes one worker",
        "SO_REUSEPORT spreads connections by hash",
    ),
    "head-of-line": (
        "in one loop a 10 ms computation stops every connection",
        "a worker of its own per connection keeps the fast requests fast",
    ),
    "rolling-restart": ("a worker exiting resets what waits in its queue", "with tcp_migrate_req=1 they move"),
    "nginx-accept": ("reuseport: each worker's own queue",),  # nginx ≥ 1.21.6 balances its shared listener too
}


def lab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "lab", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not ISOLATION, reason=f"the experiments' sysctls need private namespaces: {WHY_NOT}")
def test_every_experiment_at_its_shortest_gives_the_verdicts_of_this_kernel(tmp_path: Path) -> None:
    out = tmp_path / "lab"
    done = lab("all", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    text = done.stdout
    page = (out / "compare.html").read_text()
    assert page.index("backlog: How many connections") < page.index("<h2>Charts</h2>")  # the verdicts first
    for name, claims in HOLD.items():
        section = text.split(f"\n{name}: ", 1)[1].split("\n\n", 1)[0]
        verdicts = [line.strip()[2:] for line in section.splitlines() if line.strip().startswith("• ")]
        assert verdicts and all(v.startswith(STATES) for v in verdicts), (name, section)
        for claim in claims:
            assert any(v.startswith("holds here: ") and claim in v for v in verdicts), (name, claim, verdicts)
        assert html.escape(EXPERIMENTS[name].source.split(",")[0]) in page  # the source beside the measurement
    # The resets the clients saw are the kernel's own count of final ACKs refused at a full queue.
    found = re.search(r"connects reset with 1: ([\d,]+) \(the kernel's EmbryonicRsts: ([\d,]+)\)", text)
    assert found and found[1] == found[2], found


def test_an_arm_the_machine_cannot_run_is_not_available_here_with_why() -> None:
    assert "private network namespace" in unavailable(
        Arm("x", "blocking", 1, {"sysctl": "net.core.somaxconn=8"}), isolated=False
    )
    assert unavailable(Arm("x", "blocking", 1, needs="net.ipv4.no_such_knob"), isolated=True).startswith(
        "this kernel has no net.ipv4.no_such_knob"
    )
    assert unavailable(Arm("x", "preforked-selectors", 1, needs="epollexclusive"), isolated=True) == ""  # 4.5+ here
    assert unavailable(Arm("x", "blocking", 1, {"sysctl": "net.core.somaxconn=8"}), isolated=True) == ""


def test_a_sysctl_outside_a_private_namespace_and_an_unknown_experiment_exit_2(tmp_path: Path) -> None:
    run = run_locust(tmp_path, "--sysctl", "net.ipv4.tcp_abort_on_overflow=1", seconds=1)
    assert run.returncode == 2 and "--sysctl needs the run's own network namespace" in run.stderr, run.stderr[-800:]
    bad = run_locust(tmp_path, "--sysctl", "kernel.pid_max=5", seconds=1)
    assert bad.returncode == 2 and "not one a network namespace has of its own" in bad.stderr
    unknown = lab("nosuch", timeout=30)
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("socklab lab: error: no experiment 'nosuch'")
    listed = lab("--list", timeout=30)
    assert listed.returncode == 0 and all(name in listed.stdout for name in EXPERIMENTS)
