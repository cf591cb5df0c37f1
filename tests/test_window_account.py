"""The window's account and the stages of a connection, from records built by hand (no servers).

Each test is one defect an independent read found in a real default compare: stages that overlapped
(shares adding up to 175 %), a breakdown of the finished connections only (survivor bias), "never
accepted" judged after the window, and half-open connections called queued.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loadtest.report.rules import account
from loadtest.report.rules import stages as timeline_stages

OPEN, CLOSE = 100.0, 104.0  # the window, CLOCK_MONOTONIC s


def connection(**times: float) -> dict[str, object]:
    row: dict[str, object] = {
        "worker_id": "local",
        "user_id": "local.1",
        "local_ip": "127.0.0.1",
        "local_port": 1,
        "connect_start": 0.0,
        "connect_end": 0.0,
        "connected": 1,
        "outcome": "ok",
        "syn_retrans": 0,
        "rtt_us": 60,
        "sent": 0.0,
        "first_byte": 0.0,
        "last_byte": 0.0,
        "closed": 0.0,
        "requests": 1,
        "data_retrans": 0,
        "worker": 1.0,
        "flags": 0.0,
        "join": "joined",
    }
    for name in ("accepted", "service_start", "first_read", "first_written", "eof", "closed", "in_window_service"):
        row[f"server_{name}"] = np.nan
    row.update(times)
    return row


def stages(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = timeline_stages.with_stages(pd.DataFrame(rows), OPEN, CLOSE)
    frame["in_window"] = True
    return frame


def test_a_late_client_stamp_does_not_overlap_the_stages_they_add_up() -> None:
    # echo/blocking local.1: connect start .689023, accepted .689448, connect() returned .692204 (late).
    row = connection(
        connect_start=101.689023,
        connect_end=101.692204,
        sent=101.692210,
        first_byte=101.692900,
        last_byte=101.692907,
        server_accepted=101.689448,
        server_service_start=101.689450,
        server_first_read=101.692500,
        server_first_written=101.692600,
    )
    frame = stages([row])
    total = sum(float(frame.loc[0, s]) for s in timeline_stages.STAGES)
    assert total == pytest.approx((101.692907 - 101.689023) * 1000, abs=1e-6)  # connect start → last byte
    assert float(frame.loc[0, "handshake"]) == pytest.approx(0.425, abs=1e-3)  # not the late 3.18 ms
    assert float(frame.loc[0, "client_late"]) == pytest.approx(2.76, abs=1e-2)  # the client's own lateness
    assert all(float(frame.loc[0, s]) >= 0 for s in timeline_stages.STAGES)


def test_every_user_counts_an_unfinished_wait_up_to_the_close() -> None:
    # io-wait/blocking/50u: one user served all window long, 49 in the accept queue the whole window.
    served = connection(
        connect_start=99.0,
        connect_end=99.0001,
        sent=99.0001,
        first_byte=99.021,
        last_byte=99.021,
        server_accepted=99.00005,
        server_service_start=99.00005,
        server_first_read=99.0002,
        server_first_written=99.0202,
        server_in_window_service=3.8,
    )
    queued = [connection(connect_start=99.0, connect_end=99.0001, join="not accepted by the server") for _ in range(49)]
    frame = stages([served, *queued])
    window = 4.0
    row = account.figures(frame, "", users=50, window_s=window, request_s=window + 49 * window)
    assert row["window_share_accept_queue"] == pytest.approx(0.98, abs=0.001)
    # The served user's window: 3.8 s of its requests were service by the server's own clock, the rest waiting.
    assert row["window_share_later_service"] == pytest.approx(3.8 / 200, abs=0.0005)
    assert row["window_share_later_waiting"] == pytest.approx(0.2 / 200, abs=0.0005)
    assert row["window_share_later_requests"] == 0
    assert sum(row[f"window_share_{s}"] for s in timeline_stages.WINDOW_STAGES) == pytest.approx(1.0, abs=0.001)
    assert row["connections_never_accepted"] == 49 and row["connections_half_open"] == 0


def test_accepted_after_the_close_is_not_accepted_in_the_window() -> None:
    late = connection(
        connect_start=99.5,
        connect_end=99.5001,
        sent=99.5001,
        server_accepted=CLOSE + 0.05,
        server_service_start=CLOSE + 0.05,
        server_first_read=CLOSE + 0.06,
        server_first_written=CLOSE + 0.08,
        closed=CLOSE + 0.2,
    )
    frame = stages([late])
    assert bool(frame.loc[0, "unaccepted_at_close"]) and frame.loc[0, "stage_at_stop"] == "accept_queue"
    assert float(frame.loc[0, "accept_queue"]) == pytest.approx((CLOSE - 99.5001) * 1000, abs=1e-6)  # to the close
    assert float(frame.loc[0, "service"]) == 0.0  # what the server did after the close does not count
    row = account.figures(frame, "", users=1, window_s=4.0, request_s=4.0)
    assert row["connections_never_accepted"] == 1
    assert row["accept_queue_wait_p50_ms"] == pytest.approx((CLOSE - 99.5001) * 1000, abs=1e-3)
    assert "accept_queue_wait_p50_ms" in row["timeline_lower_bounds"]


def test_half_open_connections_are_counted_apart_from_the_accept_queue() -> None:
    # conn-storm: connect() returned, the final ACK and request dropped at the full queue (data sent again).
    half = [connection(connect_start=101.0, connect_end=101.0001, sent=101.0001, data_retrans=3) for _ in range(32)]
    queued = [connection(connect_start=101.0, connect_end=101.0001, sent=101.0001) for _ in range(9)]
    for r in half + queued:
        r["join"] = "not accepted by the server"
    frame = stages(half + queued)
    row = account.figures(frame, "", users=41, window_s=4.0, request_s=0.0)
    assert row["connections_never_accepted"] == 41 and row["connections_half_open"] == 32
    assert row["window_share_half_open"] > row["window_share_accept_queue"] > 0


def test_without_a_server_log_later_requests_stay_one_stage() -> None:
    served = connection(
        connect_start=99.0, connect_end=99.0001, sent=99.0001, first_byte=99.021, last_byte=99.021, join="no server log"
    )
    row = account.figures(stages([served]), "", users=1, window_s=4.0, request_s=4.0)
    assert row["window_share_later_requests"] == pytest.approx(1.0) and row["window_share_later_service"] == 0


def test_the_account_is_declared_once_and_summarised_whole() -> None:
    from loadtest.report.rules.summary_columns import SUMMARY_NAMES

    assert timeline_stages.WINDOW_STAGES[: len(timeline_stages.STAGES)] == timeline_stages.STAGES
    assert [c for c in SUMMARY_NAMES if c.startswith("window_share_")] == [
        f"window_share_{s}" for s in timeline_stages.WINDOW_STAGES
    ]
    assert set(timeline_stages.WINDOW_LABELS) == set(timeline_stages.WINDOW_STAGES)
    from loadtest.report.timeline_charts import COLORS

    assert set(COLORS) == set(timeline_stages.WINDOW_STAGES)  # every stage drawn in its own colour


def test_a_late_server_stamp_is_bounded_by_the_client_event_after_it() -> None:
    # conn-storm/threaded: the server thread stamped its write after waiting for the GIL, after the client
    # already had the whole reply; the stages must still end at the reply's last byte, not run past it.
    row = connection(
        connect_start=101.0,
        connect_end=101.0001,
        sent=101.0002,
        first_byte=101.0030,
        last_byte=101.0031,
        closed=101.0032,
        server_accepted=101.0001,
        server_service_start=101.0001,
        server_first_read=101.0010,
        server_first_written=101.0050,
    )
    frame = stages([row])
    assert float(frame.loc[0, "service"]) == pytest.approx(2.0, abs=1e-6)  # read → the reply's first byte
    assert sum(float(frame.loc[0, s]) for s in timeline_stages.STAGES) == pytest.approx(3.1, abs=1e-6)
    in_window = sum(float(frame.loc[0, f"in_window_{s}"]) for s in timeline_stages.STAGES)
    assert in_window == pytest.approx(0.0031, abs=1e-9)  # no more than the connection's own life


def test_a_connection_is_the_users_only_until_its_client_closes_it() -> None:
    # The client gave up after 0.1 s (a reply timeout); the server went on with its SLEEP 500 ms: that time is
    # not the user's (CI: 8.75 user-seconds accounted in a 2-user, 1.9 s window).
    row = connection(
        connect_start=101.0,
        connect_end=101.0001,
        sent=101.0002,
        closed=101.1002,
        server_accepted=101.0001,
        server_service_start=101.0001,
        server_first_read=101.0003,
        server_first_written=101.5003,
        server_closed=101.5004,
    )
    frame = stages([row])
    assert frame.loc[0, "stage_at_stop"] == "service"
    assert sum(float(frame.loc[0, f"in_window_{s}"]) for s in timeline_stages.STAGES) == pytest.approx(0.1002, abs=1e-9)


def test_a_retried_connects_last_round_trip_is_the_runs_measured_one_not_tcp_infos_floor() -> None:
    # After a re-sent SYN, TCP_INFO says exactly 1,000 µs (its millisecond floor): the last round trip is then the
    # median of this run's connects that were not retried, and the rest of its connect() is the SYN retry wait.
    fresh = connection(connect_start=100.5, connect_end=100.500025, rtt_us=25, sent=100.50003, first_byte=100.5001)
    retried = connection(
        user_id="local.2",
        local_port=2,
        connect_start=101.0,
        connect_end=102.0203,
        syn_retrans=1,
        rtt_us=1000,
        sent=102.0204,
        first_byte=102.0206,
    )
    frame = stages([fresh, retried])
    assert float(frame.loc[1, "handshake"]) == pytest.approx(0.025, abs=1e-6)  # not 1.000 ms
    assert float(frame.loc[1, "syn_retry_wait"]) == pytest.approx(1020.3 - 0.025, abs=1e-6)
