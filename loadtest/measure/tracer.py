"""The kernel's own account of each connection: tracepoints read by a small eBPF program, beside the monitor.

Why tracepoints: the kernel stamps every TCP state change (``sock:inet_sock_set_state``), every
accepted connection (``syscalls:sys_exit_accept4``) and every SYN-ACK it re-sends
(``tcp:tcp_retransmit_synack``) with CLOCK_MONOTONIC, the clock the clients' and servers' logs use.
That gives, for any server on this host — a design, a ``--server-cmd`` program, a listener socklab
did not start — when the handshake completed on each side, how long each connection sat half-open
and in the accept queue, and who closed first, measured rather than inferred.  (kprobes are absent on
this kernel kind; tracepoints and BTF are there.)

Why a libbpf program of our own (``loadtest/measure/bpf/``, built by ``.ci/setup``), not bpftrace:
bpftrace 0.17 spent ~1 µs a probe (its map updates), 10–13 µs a connection, and a second of CPU to
compile its script at every run's start; a ``printf`` per event, ~150 µs a connection.  Ours reads the
tracepoints' BTF arguments directly and writes a 40-byte record per event into a ring buffer that wakes
nobody; its loader drains it every 20 ms into ``kernel_trace.bin``: ~3 µs a connection in the kernel,
~1 µs in the loader, 30 ms to attach (``benchmarks/tracer_cost.py``).  The records are paired into
connections when the run's report is built (:mod:`loadtest.measure.kernel_pairs`), a process that has
pandas loaded anyway (the Locust process does not).

Bounded: the ring buffer is 16 MB; a record that finds it full is dropped and counted, so
``lost_events`` is exact, and the connections it cut short say so (``kernel_complete``).  The raw file
(40 bytes an event, ~12 a connection) becomes ``kernel_connections.csv`` when the report is built, and
is removed then.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.declare.kernel import KERNEL_RAW
from servers.children import die_with_parent

BPF_DIR = Path(__file__).resolve().parent / "bpf"
TRACER = BPF_DIR / "build" / "socklab-tracer"
MAX_NETNS = 4  # as tracer.h
RECORD_BYTES = 40  # struct record, tracer.h (loadtest.measure.kernel_pairs.RECORD reads it)
ATTACHED = "attached"


def netns_inode(pid: int | str = "self") -> int:
    """A process's network namespace, as the kernel numbers it (``ns.inum``)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def unavailable_reason() -> str:
    """Why the tracer cannot run here ("" when it can): not built, or no root."""
    if not os.access(TRACER, os.X_OK):
        return "the kernel tracer is not built (bash .ci/setup builds it: clang, libbpf-dev, bpftool)"
    if os.geteuid() != 0:
        return "needs root (it loads eBPF programs)"
    return ""


@dataclass
class KernelTracer:
    """One tracer process watching one server port; ``status`` says why not when there is none."""

    folder: Path
    port: int
    status: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def raw(self) -> Path:
        return self.folder / KERNEL_RAW

    @property
    def lines(self) -> Path:
        return self.folder / "kernel_trace.log"

    @classmethod
    def start(cls, port: int, netns: list[int], folder: Path) -> KernelTracer:
        """Start tracing ``port`` in these namespaces; returns at once (``wait_attached`` waits)."""
        reason = unavailable_reason()
        if reason:
            return cls(folder, port, f"unavailable: {reason}")
        folder.mkdir(parents=True, exist_ok=True)
        tracer = cls(folder, port, "starting")
        with open(tracer.lines, "wb") as out:
            tracer.proc = subprocess.Popen(
                [str(TRACER), str(port), str(tracer.raw), *map(str, netns[:MAX_NETNS])],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        return tracer

    def wait_attached(self, timeout: float = 10.0) -> bool:
        """Wait until the probes are attached (tens of ms)."""
        deadline = time.monotonic() + timeout
        while self.proc is not None and time.monotonic() < deadline:
            if ATTACHED in self._text():
                self.status = "measured"
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.status = f"unavailable: the tracer did not attach ({self._error() or 'timed out'})"
        self.stop()
        return False

    def interrupt(self) -> None:
        """Ask it to stop: it drains its ring buffer, writes its last line and exits (detaching the probes
        takes it ~150 ms: stop the server meanwhile, then ``stop``)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop it; run.json's ``kernel_trace``: its status, the events it recorded and those it lost.  The
        records are paired into connections when the run's report is built (loadtest.measure.kernel_pairs)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is not None and self.status == "measured" and self._lost() is None:
            self.status = f"unavailable: the tracer exited during the run ({self._error() or proc.returncode})"
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self.status = "unavailable: the tracer did not exit on SIGINT (killed)"
        lost = self._lost()
        if self.status == "measured" and lost is None:
            self.status = "unavailable: the tracer did not say how many events it lost"
        # Made after the status is final: a trace that cannot say what it lost is not called whole.
        info: dict[str, Any] = {"status": self.status, "mechanism": "libbpf ring buffer (loadtest/measure/bpf)"}
        if self.status == "measured" and lost is not None:
            recorded = self.raw.stat().st_size // RECORD_BYTES if self.raw.exists() else 0
            info.update(events=recorded + lost, lost_events=lost, port=self.port)
        return info

    def _text(self) -> str:
        try:
            return self.lines.read_text(errors="replace")
        except OSError:
            return ""

    def _error(self) -> str:
        lines = [ln for ln in self._text().splitlines() if ln.strip() and not ln.startswith("libbpf: prog")]
        return lines[-1][:200] if lines else ""

    def _lost(self) -> int | None:
        """The events the ring buffer could not take, from the loader's last line (None: it wrote none)."""
        for line in reversed(self._text().splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError, TypeError):
                    return int(json.loads(line)["lost_events"])
        return None
