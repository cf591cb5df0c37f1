"""socklab's figures against the wire: tcpdump in the run's own network namespace.

Runs where a private namespace can be made and tcpdump is installed (`bash .ci/setup --test`
installs it); skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.netns import can_isolate

ISOLATION, WHY_NOT = can_isolate()
needs_capture = pytest.mark.skipif(
    not ISOLATION or not shutil.which("tcpdump"),
    reason=f"needs a private network namespace ({WHY_NOT or 'ok'}) and tcpdump (bash .ci/setup --test)",
)


def in_namespace(module: str, out: Path, *args: str, timeout: float = 180) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-m", "loadtest.netns", "--", sys.executable, "-m", module,
                           "--out", str(out), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_capture
def test_tcp_syn_retrans_is_the_clients_syns_plus_the_servers_syn_acks(tmp_path: Path) -> None:
    got = in_namespace("tests.scenarios.syn_capture", tmp_path)
    assert got["returncode"] == 0, got["stderr"]
    row = got["summary"]
    assert row["counters_scope"] == "isolated"
    # The storm made SYNs go again (backlog 10, 50 users); SYN-ACKs go again only when a final ACK was
    # dropped at the full queue, which most storms do (11 of 62 here) but not every one.
    assert got["syn_retransmitted"] > 0, got
    # The clients' own count (TCP_INFO of each connecting socket) is the capture's repeated SYNs.
    assert int(row["client_syn_retrans"]) == got["syn_retransmitted"], (row, got)
    # The kernel's one counter is both together, as the capture shows.
    assert got["counter_delta"] == got["syn_retransmitted"] + got["synack_retransmitted"], got
    # The summary's server share is the counter less the clients': the capture's repeated SYN-ACKs up to
    # the monitor's last sample (a SYN-ACK re-sent while that sample ran may fall on either side).
    assert abs(int(row["server_synack_retrans"]) - got["synack_retransmitted_by_last_sample"]) <= 1, (row, got)
    assert int(row["tcp_syn_retrans"]) == int(row["client_syn_retrans"]) + int(row["server_synack_retrans"])
