"""The live tab's rows and the headless live line come from the monitor columns' declarations: a row
per live column, read from a monitor CSV written here."""

from __future__ import annotations

from pathlib import Path

from loadtest.declare.columns import MONITOR


def test_the_live_tab_shows_what_the_columns_declare(tmp_path: Path) -> None:
    from loadtest.client.latency import LatencyStore
    from loadtest.measure.live import LiveFeed, MonitorTail, figures, live_line

    names = [c.name for c in MONITOR]
    path = tmp_path / "monitor.csv"
    sample = {c: "0" for c in names} | {
        "timestamp": "1",
        "accept_queue": "4",
        "backlog": "128",
        "server_ESTABLISHED": "5",
        "TcpExt_ListenOverflows": "7",
        "counters_scope": "isolated",
        "server_rss_bytes": str(3 * 2**20),
    }
    path.write_text(",".join(names) + "\n" + ",".join(sample[c] for c in names) + "\n")
    feed = LiveFeed(monitor=MonitorTail(path))
    feed.monitor.read()
    rows = {r["figure"]: r for r in figures(feed, LatencyStore(), None, "blocking").rows}
    assert rows["accept queue / backlog"]["value"] == "4 / 128"
    assert rows["server ESTABLISHED"]["value"] == "5" and rows["server RSS"]["value"] == "3.0 MiB"
    assert rows["ListenOverflows this test"]["value"] == "7"
    assert "not a count of SYNs" in rows["ListenOverflows this test"]["meaning"]
    live = [c for c in MONITOR if c.live]
    assert len([r for r in rows if r not in ("server", "monitor sample")]) == len(live)  # a row per live column
    assert "accept queue 4/128" in live_line(feed, None) and "ListenOverflows +7" in live_line(feed, None)
