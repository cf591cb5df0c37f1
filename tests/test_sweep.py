"""socklab sweep end to end: open-loop ladders, knees, charts, a server that dies mid-ladder, bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.browser import chromium, render
from tests.helpers import ours_running


def sweep(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "sweep", *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_small_sweep_finds_the_one_at_a_time_knee(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    # One design: the rules (what gave out, a ladder with no knee) are unit-tested in test_knee.py.
    done = sweep(
        "--designs",
        "blocking",
        "--scenario",
        "io-wait",
        "--rates",
        "20,80",
        "--refine",
        "0",
        "--duration",
        "1.5s",
        "--warmup",
        "0.5s",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for name in ("sweep.csv", "knees.csv", "sweep.html", "plotly.min.js"):
        assert (out / name).exists(), name
    for rate in (20, 80):  # every step an ordinary run folder
        assert (out / f"io-wait-blocking-r{rate}" / "report.html").exists()
    with (out / "knees.csv").open() as f:
        knees = {r["design"]: r for r in csv.DictReader(f)}
    # SLEEP 20 ms one at a time: 50 req/s at most, so 20 is sustained (40 % busy) and 80 is not.
    assert float(knees["blocking"]["knee_rps"]) == 20
    assert "one connection at a time" in knees["blocking"]["gave_out_first"]
    assert "io-wait/blocking" in done.stdout and "knee 20 req/s" in done.stdout
    if chromium():
        dom, console = render(out / "sweep.html")
        for chart in ("latency-0", "achieved-0", "distribution-0"):
            block = dom.split(f'id="{chart}"', 1)
            assert len(block) == 2 and "main-svg" in block[1].split('class="chart"', 1)[0], chart
        assert not [line for line in console if "error" in line.lower()]
    assert ours_running() == []


def test_a_server_that_dies_mid_ladder_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest.cli",
            "sweep",
            "--designs",
            "threaded",
            "--scenario",
            "io-wait",
            "--rates",
            "20,40,80",
            "--refine",
            "0",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, victim = time.monotonic() + 60, None
    while victim is None:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info.get("cmdline") or []
            if "servers" in cmd[:4] and "threaded" in cmd and (out / "io-wait-threaded-r20" / "run.json").exists():
                victim = p
        time.sleep(0.1)
    time.sleep(1.0)
    victim.kill()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stdout + stderr
    assert "SERVER DIED" in stdout and "the server: server died" in stdout
    assert (out / "sweep.html").exists()
    assert ours_running() == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rates", "100,50"], "--rates"),
        (["--rates", "0,10"], "--rates"),
        (["--rates", "fast"], "--rates"),
        (["--scenario", "echo"], "invalid choice: 'echo'"),
        (["--slo-p99-ms", "-1"], "--slo-p99-ms"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], words: str) -> None:
    done = sweep(*args, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
