"""Run a command in a private network namespace of its own, loopback up: exact kernel counters.

    python -m loadtest.hosts.isolate -- locust -f loadtest/locustfile.py --headless -u 50 -t 30s

Kernel TCP counters (/proc/net/netstat, /proc/net/snmp) are per network
namespace, and the host's are shared with everything else on the machine.  In
a namespace made for one run they start at 0 and count only that run, so the
monitor's deltas are exact; TIME_WAIT left by one run does not slow the next.
Server, monitor and load generator must all live inside it: psutil and
inet_diag see only their caller's namespace.

Needs root (CAP_SYS_ADMIN).  Done with unshare(2) and one ioctl, so neither the
``unshare`` nor the ``ip`` command is required.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import sys
from pathlib import Path

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class IsolationError(OSError):
    """A private namespace could not be made here (no root, or no unshare)."""


def enter_private_netns() -> None:
    """Move this process into a new network namespace and bring its loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise IsolationError(err, f"cannot create a network namespace: {os.strerror(err)} (needs root)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    os.environ[ENV_MARK] = current_netns()  # inherited by everything started in here


ENV_MARK = "SOCKLAB_PRIVATE_NETNS"  # set to the namespace's id by enter_private_netns()


def current_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def in_private_netns() -> bool:
    """True when this process's network namespace is not the host's.

    Three pieces of evidence, in order: the mark ``enter_private_netns`` leaves in
    the environment; the namespace of pid 1 when it can be read; and, because inside
    a namespace made by plain ``unshare --net`` /proc/1/ns/net is unreadable (EACCES),
    the interfaces this namespace has — loopback alone means nothing but this
    machine's own traffic can reach its counters.
    """
    here = current_netns()
    if os.environ.get(ENV_MARK) == here:
        return True
    try:
        return here != os.readlink("/proc/1/ns/net")
    except OSError:
        pass
    return only_loopback()


def netns_label() -> str:
    """Which network namespace this process is in, in words: its ``ip netns`` name if it has one,
    ``host`` for the init namespace, else the kernel's id (``net:[4026531840]``)."""
    here = current_netns()
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir("/run/netns"), key=lambda e: e.name):
            with contextlib.suppress(OSError):
                st = os.stat(entry.path)
                if f"net:[{st.st_ino}]" == here:
                    return entry.name
    try:
        if here == os.readlink("/proc/1/ns/net"):
            return "host"
    except OSError:
        pass
    return here


def only_loopback() -> bool:
    """This namespace has no interface but ``lo`` (if_nameindex asks the kernel, in this namespace)."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def can_isolate() -> tuple[bool, str]:
    """Whether a private namespace can be made here, and why not if not."""
    if os.geteuid() != 0:
        return False, "not root"
    pid = os.fork()
    if pid == 0:  # try it in a throwaway child
        try:
            enter_private_netns()
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return (os.waitstatus_to_exitcode(status) == 0), "unshare(CLONE_NEWNET) failed"


def set_sysctls(values: dict[str, str]) -> str | None:
    """Write these sysctls — only in a private network namespace, never the host's.  The problem, as one
    line, or None once they are set."""
    if not values:
        return None
    if not in_private_netns():
        return (
            "--sysctl needs the run's own network namespace: socklab never changes the host's settings; "
            "run it in a cell of socklab compare or socklab lab, or under python -m loadtest.hosts.isolate --"
        )
    for name, value in values.items():
        path = Path("/proc/sys", *name.split("."))
        try:
            path.write_text(value)
        except OSError as exc:
            return f"--sysctl {name}={value}: {exc.strerror or exc} (this kernel may not have it)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.stderr.write("usage: python -m loadtest.hosts.isolate -- COMMAND [ARGS...]\n")
        return 2
    try:
        enter_private_netns()
    except IsolationError as exc:
        sys.stderr.write(f"loadtest.hosts.isolate: {exc.strerror}; run as root or drop the isolation\n")
        return 2
    try:
        os.execvp(args[0], args)
    except OSError as exc:
        sys.stderr.write(f"loadtest.hosts.isolate: cannot run {args[0]!r}: {exc.strerror}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
