"""Network-namespace plumbing for the test bed: iproute2 calls, what this machine can build, and the
clean-up of beds whose owner was killed before it could tear them down."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess


class TestbedError(RuntimeError):
    """The test bed could not be built here; the message says why in one line."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)}: {out.stderr.strip() or out.returncode}")
    return out


def can_build() -> tuple[bool, str]:
    """Whether namespaces with links can be made here, and why not if not."""
    if os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return False, "iproute2's ip is not installed (bash .ci/setup installs it)"
    probe = f"slprobe{os.getpid()}"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    except TestbedError as exc:
        return False, str(exc)
    finally:
        ip("netns", "del", probe, check=False)
    return True, ""


def netem_available(namespace: str, device: str) -> bool:
    """tc netem on a throwaway qdisc; False where the kernel lacks sch_netem."""
    if shutil.which("tc") is None:
        return False
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"], capture_output=True)
    return True


# A bed's namespaces are PREFIX-srv, -sw, -wN; the default PREFIX is sl<pid of the bed's owner>.
BED_NAMESPACE = re.compile(r"^(sl[a-z]*?(\d+)[a-z]*)-(srv|sw|w\d+)$")


def stale_beds() -> dict[str, list[str]]:
    """Beds whose owner is gone (a SIGKILLed testbed cannot tear down): prefix → its namespaces.

    The owner's pid is in the name; a bed whose owner is alive is never listed."""
    beds: dict[str, list[str]] = {}
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = BED_NAMESPACE.match(name)
        if match and not _alive(int(match.group(2))):
            beds.setdefault(match.group(1), []).append(name)
    return beds


def remove_stale_beds() -> list[str]:
    """Remove every stale bed: what still runs in its namespaces, then the namespaces (their links go
    with them).  Returns one line per bed removed."""
    said = []
    for namespaces in (sorted(v) for _, v in sorted(stale_beds().items())):
        killed = 0
        for ns in namespaces:
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
        for ns in namespaces:
            ip("netns", "del", ns, check=False)
        owner = BED_NAMESPACE.match(namespaces[0]).group(2)  # type: ignore[union-attr]
        still = f", and {killed} process{'es' if killed != 1 else ''} still in it" if killed else ""
        said.append(
            f"testbed: removed a bed left behind by pid {owner} (no longer running): {', '.join(namespaces)}{still}"
        )
    return said


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
