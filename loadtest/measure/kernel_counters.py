"""The kernel's TCP counters of this network namespace (``nstat``'s source), read in one go.

Its own module so that what reads the counters at a window's edges (loadtest.matrix.window) need not
import the monitor, and its numpy, into every load process.
"""

from __future__ import annotations


def read_kernel_counters() -> dict[str, int]:
    """TcpExt (/proc/net/netstat) and Tcp (/proc/net/snmp) counters of this network namespace."""
    counters: dict[str, int] = {}
    for path, prefixes in (("/proc/net/netstat", ("TcpExt:",)), ("/proc/net/snmp", ("Tcp:",))):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            prefix = names.split(" ", 1)[0]
            if prefix in prefixes:
                tag = prefix[:-1]
                for name, value in zip(names.split()[1:], values.split()[1:], strict=True):
                    counters[f"{tag}_{name}"] = int(value)
    return counters
