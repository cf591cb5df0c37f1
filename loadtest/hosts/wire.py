"""socklab's wire: netem's delay in user space, for kernels without sch_netem.

    python -m loadtest.hosts.wire [--delay-ms D] [--loss-percent P] TAP [TAP ...]

Run by ``loadtest.hosts.testbed`` in the switch namespace: it opens each TAP interface, forwards Ethernet
frames between them like a learning switch, each after D ms (and drops P % of them), and prints
``ready`` once the TAPs are open — the bed then moves each TAP into its host's namespace.  Both
hosts' kernels do the real TCP handshake, retransmits and all.  SIGTERM, SIGINT and SIGHUP end it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def run_wire(taps: list[str], delay_s: float, loss: float) -> int:
    """Forward Ethernet frames between TAPs like a learning switch, each after `delay_s`."""
    fds = [open_tap(name) for name in taps]
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    port_of: dict[bytes, int] = {}  # MAC → the TAP it was last seen on
    due: list[tuple[float, int, int, bytes]] = []  # (send at, sequence, to fd, frame): constant delay keeps order
    sequence = 0
    while not stopping:
        timeout = max(due[0][0] - time.monotonic(), 0.0) if due else 0.5
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            for _ in range(64):  # what is queued on this TAP now, a bounded batch
                try:
                    frame = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if len(frame) < 14:
                    continue
                port_of[frame[6:12]] = fd
                if loss and random.random() < loss:
                    continue
                out = port_of.get(frame[0:6])
                targets = [out] if out is not None and out != fd else [f for f in fds if f != fd]
                for target in targets:
                    sequence += 1
                    heapq.heappush(due, (now + delay_s, sequence, target, frame))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, target, frame = heapq.heappop(due)
            with contextlib.suppress(OSError):  # a TAP whose namespace is going away
                os.write(target, frame)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.hosts.wire")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss-percent", type=float, default=0.0)
    parser.add_argument("taps", nargs="+")
    args = parser.parse_args(argv)
    return run_wire(args.taps, args.delay_ms / 1000, args.loss_percent / 100)


if __name__ == "__main__":
    sys.exit(main())
