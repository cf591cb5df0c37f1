"""Start and stop a server variant as a separate OS process (``python -m servers``).

The harness never runs a server in its own process: Locust's gevent patching
would turn the variant's threads and selectors into greenlets and measure
gevent instead.  The child announces its real port on its first stdout line,
is tied to its parent's life (PR_SET_PDEATHSIG, so a ``kill -9`` of the harness
does not orphan it), and is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """The server process did not come up; the message says why in one line."""


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when its parent dies, so no harness crash leaves it running."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ServerProcess:
    variant: str
    host: str
    port: int
    backlog: int
    pid: int
    proc: subprocess.Popen[bytes] = field(repr=False)
    stopped: dict[str, Any] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @classmethod
    def start(
        cls,
        variant: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        wrapper: list[str] | tuple[str, ...] = (),
        timeout: float = 10.0,
    ) -> ServerProcess:
        """Launch ``python -m servers VARIANT`` and wait for its ``listening`` line."""
        cmd = [sys.executable, "-m", "servers", variant, "--host", host, "--port", str(port)]
        if backlog is not None:
            cmd += ["--backlog", str(backlog)]
        return cls.launch([*wrapper, *cmd, *extra_args], variant, timeout=timeout)

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
            variant=event.get("variant", label),
            host=event["host"],
            port=int(event["port"]),
            backlog=int(event["backlog"]),
            pid=int(event["pid"]),
            proc=proc,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """SIGTERM, wait, SIGKILL if needed; returns the server's ``stopped`` line if it gave one."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
        return self.stopped

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
