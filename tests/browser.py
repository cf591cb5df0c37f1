"""Headless Chromium for page tests: the DOM after scripts ran, console messages, a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, screenshot: Path | None = None, height: int = 5200) -> tuple[str, list[str]]:
    """Open a local page; returns (DOM after 15 s of virtual time, console lines); with `screenshot`, saves
    one too (a second browser run)."""
    exe = chromium()
    assert exe, "chromium is not installed (bash .ci/setup --test installs it)"
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if screenshot is not None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    exe,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "--virtual-time-budget=15000",
                    f"--window-size=1400,{height}",
                    f"--screenshot={screenshot}",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    return dom.stdout, console
