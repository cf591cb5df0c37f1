"""The processes the harness starts beside Locust: the server under test and its monitor.

The harness never runs a server in its own process: Locust's gevent patching
would turn the design's threads and selectors into greenlets and measure
gevent instead; and a monitor scan inside Locust would stall every user.  So
both are OS processes of their own, each in a session (and process group) of
its own, tied to the harness's life (PR_SET_PDEATHSIG, so a ``kill -9`` of the
harness does not orphan them: ``servers.children.die_with_parent``, the one helper for it).  The
server's flags are ``servers.config``'s, where each is declared.

:class:`ServerProcess` announces its real port on its first stdout line and is
stopped by signalling its whole process group — SIGTERM, then SIGKILL — so
children a design forks never outlive it.  :class:`MonitorProcess` is the one
place that builds the monitor's command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.children import die_with_parent
from servers.config import flags as server_flags


class ServerStartError(RuntimeError):
    """The server process did not come up; the message says why in one line."""


@dataclass
class ServerProcess:
    design: str
    host: str
    port: int
    backlog: int
    pid: int
    proc: subprocess.Popen[bytes] = field(repr=False)
    traits: dict[str, bool] = field(default_factory=dict)
    command: list[str] | None = None  # a --server-cmd server: no listening/stopped lines
    stevens: str = ""  # the UNP chapter 30 design it is, if any
    workers: int | None = None  # a pooled design's pool size
    argv: list[str] = field(default_factory=list)  # the command line it was started with
    model: str = ""  # the design's process model and connection loop, as the server announced them
    loop: str = ""
    _finished: bool = field(default=False, repr=False)
    stopped: dict[str, Any] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @classmethod
    def start(
        cls,
        design: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        wrapper: list[str] | tuple[str, ...] = (),
        timeout: float = 10.0,
    ) -> ServerProcess:
        """Launch ``python -m servers DESIGN`` and wait for its ``listening`` line."""
        given = {"backlog": backlog} if backlog is not None else {}
        cmd = [sys.executable, "-m", "servers", design, *server_flags(host=host, port=port, **given)]
        return cls.launch([*wrapper, *cmd, *extra_args], design, timeout=timeout)

    @classmethod
    def launch(
        cls, cmd: list[str], label: str, *, timeout: float = 10.0, env: dict[str, str] | None = None
    ) -> ServerProcess:
        """Run any command that speaks the ``listening``/``stopped`` line protocol."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops us in order
        )
        line = _read_line(proc, timeout)
        try:
            event = json.loads(line)
            if event.get("event") != "listening":
                raise ValueError
        except ValueError:
            err = b""
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                err = proc.stderr.read()
            reason = err.decode(errors="replace").strip().splitlines()
            raise ServerStartError(reason[-1] if reason else f"server {label!r} did not start") from None
        return cls(
            design=event.get("design", label),
            host=event["host"],
            port=int(event["port"]),
            backlog=int(event["backlog"]),
            pid=int(event["pid"]),
            proc=proc,
            traits=dict(event.get("traits") or {}),
            stevens=str(event.get("stevens", "")),
            workers=event.get("workers"),
            argv=list(cmd),
            model=str(event.get("model", "")),
            loop=str(event.get("loop", "")),
        )

    @classmethod
    def start_command(
        cls, template: str, name: str, *, host: str = "127.0.0.1", timeout: float = 10.0
    ) -> ServerProcess:
        """Bring your own server: run ``template`` with ``{port}`` replaced by a free port, and wait
        until that port accepts a connection (the process need not speak the listening line)."""
        port = free_port(host)
        cmd = shlex.split(template.replace("{port}", str(port)))
        with tempfile.TemporaryFile() as stderr:  # the child keeps its own copy of the fd
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    preexec_fn=die_with_parent,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerStartError(f"cannot run {cmd[0]!r}: {exc.strerror}") from None
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    stderr.seek(0)
                    lines = stderr.read().decode(errors="replace").strip().splitlines()
                    last = f": {lines[-1]}" if lines else ""
                    raise ServerStartError(f"the server command exited at once (status {proc.returncode}){last}")
                with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                    break
                if time.monotonic() > deadline:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
                    raise ServerStartError(f"the server command did not accept on port {port} within {timeout:g} s")
                time.sleep(0.02)
        return cls(design=name, host=host, port=port, backlog=-1, pid=proc.pid, proc=proc, command=cmd, argv=cmd)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """SIGTERM to the process group, wait, SIGKILL to the group if needed.

        Returns the server's ``stopped`` line if it gave one.  Safe to call twice.
        """
        if self._finished:
            return self.stopped
        if self.proc.poll() is None:
            try:
                _signal_group(self.proc, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait()
        # Whatever the server left in its group (children that did not exit with it) goes too.
        _signal_group(self.proc, signal.SIGKILL)
        if self.command is not None:  # a command of the user's: its exit status is all it says
            self.stopped = {"event": "exited", "returncode": self.proc.returncode}
        if self.stopped is None and self.proc.stdout is not None:
            for raw in self.proc.stdout.read().splitlines():
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if event.get("event") == "stopped":
                    self.stopped = event
            self.proc.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._finished = True
        return self.stopped

    def describe(self) -> dict[str, Any]:
        """The server's facts for run.json."""
        facts: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "backlog": self.backlog,
            "pid": self.pid,
            "traits": self.traits,
            "argv": self.argv,
        }
        if self.model:
            facts["design"] = {"model": self.model, "loop": self.loop}
        if self.command is not None:
            facts["command"] = self.command
        if self.stevens:
            facts["stevens"] = self.stevens
        if self.workers is not None:
            facts["workers"] = self.workers
        return facts

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick), for a server that takes its port as an argument."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal the process group the child leads (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@dataclass
class MonitorProcess:
    """``python -m loadtest.measure.monitor`` sampling one server into a CSV file, as its own process."""

    proc: subprocess.Popen[bytes] = field(repr=False)
    out: Path

    @classmethod
    def start(
        cls,
        server_pid: int,
        port: int,
        out: Path,
        *,
        interval: float = 0.5,
        loadgen_pids: list[int] | tuple[int, ...] = (),
        wait_first_row: float = 15.0,
        capture: bool = False,
    ) -> MonitorProcess:
        """Start it; with ``wait_first_row`` > 0, return once its first row is on disk.

        Waiting matters: the kernel-counter baseline and the idle server's RSS must be
        taken before the load starts, not half a second into it.
        """
        cmd = [
            sys.executable,
            "-m",
            "loadtest.measure.monitor",
            "--pid",
            str(server_pid),
            "--port",
            str(port),
            "--interval",
            str(interval),
            "--out",
            str(out),
        ]
        for pid in loadgen_pids:
            cmd += ["--loadgen-pid", str(pid)]
        pipe = subprocess.PIPE if capture else None
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, preexec_fn=die_with_parent, start_new_session=True
        )
        monitor = cls(proc, Path(out))
        if wait_first_row > 0:
            monitor.wait_rows(1, wait_first_row)
        return monitor

    def rows_written(self) -> int:
        try:
            return max(self.out.read_bytes().count(b"\n") - 1, 0)
        except OSError:
            return 0

    def wait_rows(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self.rows_written() >= n:
                return True
            time.sleep(0.02)
        return self.rows_written() >= n

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (it writes one last row, then exits); SIGKILL if it does not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    if rest:
        # Nothing but the listening line is expected before stop(); keep the rest for it.
        proc.stdout = _Prefixed(rest, proc.stdout)  # type: ignore[assignment]
    return line


class _Prefixed:
    """A stdout wrapper that replays bytes read past the first line."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self._prefix, self._stream = prefix, stream

    def read(self) -> bytes:
        data, self._prefix = self._prefix + self._stream.read(), b""
        return data

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._stream.close()
