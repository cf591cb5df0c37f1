from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtest.matrix.processes import ServerProcess
from tests.helpers import DESIGNS


@pytest.fixture(params=DESIGNS)
def design(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(design: str) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(design, extra_args=["--read-timeout", "3"])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", params=DESIGNS)
def shared(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server of each design for the tests it must survive one after another (any bytes, any client,
    any abrupt end); a test that counts its stop line, or stops it, takes a fresh ``server``."""
    proc = ServerProcess.start(request.param, extra_args=["--read-timeout", "3"])
    try:
        yield proc
    finally:
        proc.stop()
