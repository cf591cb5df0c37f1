"""The live view: the kernel's side of the test while it runs, beside Locust's own figures.

Data flow stays one way.  The monitor process appends rows to ``monitor.csv``;
:class:`MonitorTail` reads the file as it grows (whole lines only, from where the
last read stopped).  The µs counts that reach the master (or the local runner's own
recorder, drained every tick) go into the run's window histograms *and* into an
interval histogram here, which every tick turns into one p50/p99 point per request
type.  From these two sources come the rows of the web UI's ``socklab`` tab, the
JSON the live chart page polls, and the compact line a ``--headless`` run prints.

Every figure keeps its meaning from the metric definitions: counter figures are
deltas in the monitor's namespace (``counters_scope`` says whether they are the
run's alone); ListenOverflows is packets dropped at a full accept queue, not SYNs;
µs percentiles are over finished requests of the current test (what is still in
flight shows as the longest user wait, which includes the open stretch).

No locust import: the plugin and the web module feed it plain data.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.client.accounting import waiting_words
from loadtest.client.latency import LatencyStore
from loadtest.declare.charts import CHART_COLUMNS, CHARTS
from loadtest.declare.columns import LIVE_DELTAS, MONITOR, MONITOR_BY_NAME, Column
from loadtest.declare.kinds import CONNECT, OPS

TICK_S = 2.0  # how often latency points are taken and the local recorder drained (Locust polls every 2 s)
MAX_POINTS = 20_000  # a cap on what the page is sent (10 hours of 2 s points per type)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class MonitorTail:
    """``monitor.csv`` read as the monitor appends to it: whole rows only, each read once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.offset = 0
        self.columns: list[str] | None = None
        self.rows: list[dict[str, float | str]] = []

    def read(self) -> list[dict[str, float | str]]:
        """The rows appended since the last read (also kept in ``rows``)."""
        if self.path is None:
            return []
        try:
            with self.path.open("rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:  # written anew from the start: read it all again
                    self.offset, self.columns, self.rows = 0, None, []
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a row being written has no newline yet: leave it for next time
        self.offset += end
        new = []
        for line in data[:end].decode(errors="replace").splitlines():
            if self.columns is None:
                self.columns = line.split(",")
                continue
            values = line.split(",")
            if len(values) == len(self.columns):
                new.append({c: _number(v) for c, v in zip(self.columns, values, strict=True)})
        self.rows.extend(new)
        return new

    @property
    def latest(self) -> dict[str, float | str] | None:
        return self.rows[-1] if self.rows else None


@dataclass
class LatencyPoint:
    """One tick's finished requests of one type: how many, and their µs p50/p99."""

    t: float
    type: str
    name: str
    count: int
    p50_us: int
    p99_us: int


@dataclass
class LiveFeed:
    """What the live views show, fed by the run; read by the web tab, the chart page and the live line."""

    monitor: MonitorTail = field(default_factory=MonitorTail)
    interval: LatencyStore = field(default_factory=LatencyStore)
    points: list[LatencyPoint] = field(default_factory=list)
    window_baseline: dict[str, float] = field(default_factory=dict)  # counters when the test started
    test_started: float | None = None
    tests: int = 0
    generation: int = 0  # bumped for each new monitor: a page holding older rows starts over

    def attach_monitor(self, path: Path | None) -> None:
        """A new monitor (a new server): its file starts over, and so do the series."""
        self.monitor = MonitorTail(path)
        self.generation += 1
        self.monitor.read()
        self.window_baseline = self._counters()

    def add_counts(self, data: dict[str, Any]) -> None:
        self.interval.add(data)

    def open_window(self) -> None:
        """A test starts (or its warm-up ends): counter deltas count from here."""
        self.monitor.read()
        self.window_baseline = self._counters()
        self.test_started = time.time()
        self.tests += 1

    def _counters(self) -> dict[str, float]:
        row = self.monitor.latest or {}
        return {c: float(row.get(c, 0) or 0) for c in LIVE_DELTAS}

    def tick(self, now: float | None = None) -> None:
        """Close the current interval: one latency point per request type, then a fresh interval."""
        now = time.time() if now is None else now
        self.monitor.read()
        interval, self.interval = self.interval, LatencyStore()
        for key, hist in sorted(interval.histograms.items()):
            count = hist.get_total_count()
            if count:
                self.points.append(
                    LatencyPoint(
                        now, key[0], key[1], count, hist.get_value_at_percentile(50), hist.get_value_at_percentile(99)
                    )
                )
        del self.points[:-MAX_POINTS]

    def window_delta(self, counter: str) -> int:
        row = self.monitor.latest or {}
        return int(float(row.get(counter, 0) or 0) - self.window_baseline.get(counter, 0.0))

    def chart_data(self, since_row: int = 0, since_point: int = 0, generation: int | None = None) -> dict[str, Any]:
        """What the chart page polls: monitor rows and latency points after the ones it has.

        A page that holds rows of an earlier monitor (``generation`` differs) gets them all anew.
        """
        self.monitor.read()
        reset = generation is not None and generation != self.generation
        if reset:
            since_row = 0
        rows = self.monitor.rows[since_row:]
        return {
            "generation": self.generation,
            "reset": reset,
            "monitor": {c: [r.get(c) for r in rows] for c in CHART_COLUMNS},
            "next_row": since_row + len(rows),
            "latency": [p.__dict__ for p in self.points[since_point:]],
            "next_point": len(self.points),
            "counters_scope": (self.monitor.latest or {}).get("counters_scope", ""),
            "charts": chart_specs(),
        }


@dataclass
class UserFigures:
    """Users of the current test, from the per-user ledgers (loadtest.client.accounting)."""

    users: int
    served: int
    starved: int
    longest_wait_s: float

    @classmethod
    def of(cls, rows: list[list[Any]]) -> UserFigures:
        served = sum(1 for r in rows if r[1] > 0)
        return cls(len(rows), served, len(rows) - served, max((float(r[3]) for r in rows), default=0.0))


@dataclass
class LiveFigures:
    """One row per figure of the ``socklab`` tab: what it is, its value now, and what it counts."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, figure: str, value: Any, meaning: str) -> None:
        self.rows.append({"figure": figure, "value": str(value), "meaning": meaning})


def _int(row: dict[str, Any], column: str) -> int:
    try:
        return int(float(row.get(column, 0) or 0))
    except (TypeError, ValueError):
        return 0


def chart_specs() -> list[dict[str, Any]]:
    """The charts of loadtest.declare.columns as plain data: the live page draws these, as the run page does."""
    return [
        {
            "key": c.key,
            "title": c.title,
            "y_title": c.y_title,
            "stacked": c.stacked,
            "series": [
                {"column": s.column, "name": s.label(), "dash": s.dash, "scale": s.scale, "offset": s.offset}
                for s in c.series
            ],
        }
        for c in CHARTS
    ]


def shown_value(column: Column, row: dict[str, Any]) -> str:
    """A monitor value as the live tab shows it, in its column's unit."""
    value = float(row.get(column.name, 0) or 0)
    if column.unit.startswith("%"):
        return f"{value:.0f} %"
    if column.unit == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    return f"{int(value):,}"


def figures(
    feed: LiveFeed, store: LatencyStore, users: UserFigures | None, server: str, client_syn_retrans: int | None = None
) -> LiveFigures:
    """The tab's table: users, µs percentiles, the latest monitor sample's live columns and this test's
    counter deltas (both as loadtest.declare.columns declares them)."""
    out = LiveFigures()
    row = feed.monitor.latest
    out.add("server", server, "what the load goes to")
    if users is not None:
        out.add(
            "users served / starved",
            f"{users.served} / {users.starved} of {users.users}",
            "served: ≥ 1 successful request this test; starved: none yet",
        )
        out.add(
            "longest user wait",
            f"{users.longest_wait_s * 1000:,.0f} ms",
            "the longest stretch any user went without a success, open stretches included",
        )
    for (request_type, name), hist in sorted(store.histograms.items()):
        count = hist.get_total_count()
        if count:
            out.add(
                f"µs p50 / p99 {request_type} {name}",
                f"{hist.get_value_at_percentile(50):,} / {hist.get_value_at_percentile(99):,} µs ({count:,})",
                "this test's finished requests, 1 µs resolution (Locust rounds to whole ms)",
            )
    if client_syn_retrans is not None:
        out.add(
            "client SYN retransmissions",
            f"{client_syn_retrans:,}",
            "SYNs the load processes re-sent since the run started, counted by each connecting socket",
        )
    if row is None:
        out.add("monitor", "no sample", "socklab monitors only a server it started")
        return out
    age = time.time() - float(row.get("timestamp", 0) or 0)
    out.add("monitor sample", f"{age:.1f} s ago", f"counters scope: {row.get('counters_scope', '')}")
    for column in MONITOR:
        if column.live == "now":
            if column.live_with:
                other = MONITOR_BY_NAME[column.live_with]
                out.add(
                    f"{column.shown} / {other.shown}",
                    f"{shown_value(column, row)} / {shown_value(other, row)}",
                    f"{column.meaning}; against {other.meaning}",
                )
            else:
                out.add(column.shown, shown_value(column, row), column.meaning)
        elif column.live == "delta":
            out.add(f"{column.shown} this test", f"{feed.window_delta(column.name):,}", column.meaning)
    return out


def waiting_now(in_flight: list[tuple[str, str, float]], store: LatencyStore) -> str:
    """This process's work in flight that has waited longer than the finished p99 (and the floor)."""
    groups = []
    for kinds, noun in ((OPS, "request"), ((CONNECT,), "connect")):
        hists = [h for (kind, _), h in store.histograms.items() if kind in kinds and h.get_total_count()]
        p99 = max((h.get_value_at_percentile(99) for h in hists), default=0) / 1000
        groups.append((noun, [age * 1000 for kind, _, age in in_flight if kind in kinds], p99))
    return waiting_words(groups)


def live_line(feed: LiveFeed, users: UserFigures | None, waiting: str = "") -> str:
    """The compact line a headless run prints every few seconds: the live columns, then the users, then
    work in flight that has waited longer than the finished p99 (nothing when none has)."""
    row = feed.monitor.latest
    parts = []
    if row is not None:
        for column in MONITOR:
            if column.live == "now" and column.live_with:
                parts.append(f"{column.shown} {_int(row, column.name)}/{_int(row, column.live_with)}")
            elif column.live == "now":
                parts.append(f"{column.shown} {shown_value(column, row).replace(' %', '%')}")
            elif column.live == "delta":
                parts.append(f"{column.shown} +{feed.window_delta(column.name)}")
    else:
        parts.append("no monitor")
    if users is not None:
        parts.append(f"users served {users.served}/{users.users} starved {users.starved}")
    if waiting:
        parts.append(waiting)
    return "socklab live: " + " · ".join(parts)
