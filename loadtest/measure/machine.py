"""What run.json records about the machine a run ran on: the versions that matter and the
per-namespace sysctls as the run found them (after any ``--sysctl``)."""

from __future__ import annotations

import platform
from pathlib import Path

from loadtest.declare.settings import NAMESPACE_SYSCTLS

SYSCTLS = NAMESPACE_SYSCTLS


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def of(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "unknown"

    return {
        "socklab": of("socklab"),
        "locust": of("locust"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "psutil": of("psutil"),
    }


def sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        try:
            out[name] = Path("/proc/sys", *name.split(".")).read_text().strip()
        except OSError:
            out[name] = "unknown"
    return out
