"""Child processes for the multi-process designs: fork one to run a function, reap, stop them all.

A child runs its function and leaves with ``os._exit`` — never the parent's
clean-up, never its ``stopped`` line.  It inherits the SIGTERM handler, so a
stop sent to the process group unwinds it too (``ServerStopping``).  Stopping
from the parent waits for the children before giving up on them: their last
counts reach the shared counters before they exit, and the ``stopped`` line
must include them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

from servers.base import ServerStopping

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int = 0) -> None:
    """A child gets SIGTERM if its parent dies — even by SIGKILL, which no clean-up sees.

    The one helper for it: a server's forked workers, and (as ``preexec_fn``) every process the harness
    starts.  `parent`: the pid the child was forked from; if it is no longer the parent, it died before
    the prctl took effect, and the child leaves now.  (Comparing with it, not with 1: the parent may be
    pid 1 of a container, or a subreaper may adopt the child.)
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != parent:
        os._exit(0)


class Children:
    def __init__(self) -> None:
        self.pids: set[int] = set()

    def fork(self, run: Callable[[], object]) -> int:
        """Fork a child that runs `run()` and exits; returns its pid in the parent."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                die_with_parent(parent)
                run()
            except ServerStopping:
                pass
            except BaseException:
                code = 1
                traceback.print_exc(file=sys.stderr)
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.pids.add(pid)
        return pid

    def reap(self) -> list[int]:
        """Collect every child that has exited, without waiting; returns their pids."""
        gone = []
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                self.pids.discard(pid)
                gone.append(pid)
        except ChildProcessError:  # no child left at all: any pid still listed was reaped elsewhere
            gone.extend(self.pids)
            self.pids.clear()
        return gone

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM every child, reap for up to `grace` s, then SIGKILL and reap what is left."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in list(self.pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.pids and time.monotonic() < deadline:
                self.reap()
                time.sleep(0.005)
            if not self.pids:
                return

    def __len__(self) -> int:
        return len(self.pids)
