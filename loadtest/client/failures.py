"""Failure classes: a failed connect or request as one stable, readable class (Locust's failure table
groups by the text), from the socket exception behind it.  No locust import."""

from __future__ import annotations

import errno
import socket
from typing import Any


class RequestFailure(Exception):
    """A failed connect or request; ``str()`` is its class, stable across occurrences."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind

    def __repr__(self) -> str:
        # Locust's failure table shows repr(); make it the readable class, not the class name.
        return str(self)


def refused(address: str) -> RequestFailure:
    return RequestFailure("refused", f"nothing listening at {address} (ECONNREFUSED)")


def classify(exc: BaseException, phase: str, address: str, timeout: float | None) -> RequestFailure:
    """Turn a socket exception into one of the failure classes."""
    if isinstance(exc, RequestFailure):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return refused(address)
    if isinstance(exc, TimeoutError | socket.timeout):
        if phase == "connect":
            return RequestFailure("connect timeout", f"no handshake with {address} within {timeout:g} s")
        return RequestFailure("read timeout", f"no complete reply within {timeout:g} s")
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return RequestFailure("reset", "the connection was reset by the server")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return RequestFailure("address not available", "no free local port (ephemeral ports exhausted)")
    if isinstance(exc, OSError):
        return RequestFailure("socket error", f"{phase}: {exc.strerror or exc}")
    return RequestFailure("client error", f"{type(exc).__name__}: {exc}")


def failure_class(error: Any) -> str:
    """The stable class of a failure message: 'refused: nothing listening …' → 'refused'."""
    text = str(error)
    return text.split(":", 1)[0].strip() if ":" in text else text
