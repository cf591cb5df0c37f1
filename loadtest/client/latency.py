"""µs-resolution latency histograms: cheap to record, mergeable across processes, exact to report.

Locust rounds response times under 100 ms to whole milliseconds, so a loopback
echo (~0.1 ms) reads 0 at every percentile.  socklab keeps its own histograms.

Recording must cost little on the load generator's hot path, so a
:class:`LatencyRecorder` only counts whole microseconds in a dict (one dict
update per request).  Workers ship and reset those counts with every Locust
report; the master folds them into HdrHistogram objects (the ``hdrhistogram``
package: 3 significant digits, 1 µs … 1 hour), which merge exactly and give
percentiles.  Failures are counted but not mixed into the latency histogram.

Two measures: ``latency`` (in open loop from each request's intended start) and,
in open loop only, ``service`` (from the actual send; uncorrected).  Work still in
flight when the window closed is kept apart as ``unfinished`` ages (lower bounds),
so the summary can say which percentiles they would move.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from loadtest.declare.kinds import NOT_LOCUST_EVENTS

if TYPE_CHECKING:
    import numpy as np

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50, 90, 95, 99, 99.9, 99.99)
CSV_COLUMNS = [
    "type",
    "name",
    "measure",
    "count",
    "failures",
    "unfinished",
    "unfinished_max_age_us",
    "min_us",
    "p50_us",
    "p90_us",
    "p95_us",
    "p99_us",
    "p99.9_us",
    "p99.99_us",
    "max_us",
    "mean_us",
]
# Request types that are not Locust request events (no Locust counterpart to check against).


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def recorded(hist: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Every recorded value (µs, each bucket's lowest) and its count, read off the counts array at once
    (hdrh's own recorded-value iterator costs ~10 µs a bucket in Python)."""
    import numpy as np  # here, not at the top: a load process never calls this, and numpy costs it ~0.1 s to start

    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
    index = np.flatnonzero(counts)
    values = np.array([hist.get_value_from_index(int(i)) for i in index], dtype=np.int64)
    return values, counts[index].astype(np.int64)


class Tally:
    """One (type, name)'s finished requests since the last flush: whole µs → count, and reply bytes."""

    __slots__ = ("bytes", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.bytes = 0


# sink(request_type, name, µs counts, reply bytes, wall time): Locust's statistics, fed in bulk.
Sink = Callable[[str, str, dict[int, int], int, float], Any]


class LatencyRecorder:
    """This load process's finished requests, per (type, name), in whole µs.

    The hot path is one dict update in a :class:`Tally` a user holds (``tally(type, name)``).
    Every ``flush`` (about every 100 ms, and before every report) hands what is new to ``sink`` —
    Locust's statistics, in bulk instead of one ``request`` event per request — and folds it into
    the counts ``drain`` ships to the master.  Failures are counted apart, never in the latencies.
    The sink is given the middle of the time since the last flush as the requests' time: Locust counts
    them in that whole second (its per-second counts, the report's throughput), and as flushes fall on
    tenths of a second, a flush's requests finished in that second but for the loop's wake-up lag.
    Stamped with the flush's own time instead, up to 100 ms of a second's requests went to the next.
    """

    __slots__ = ("closed", "counts", "failures", "flushed_at", "service", "sink", "tallies")

    def __init__(self, sink: Sink | None = None) -> None:
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.counts: dict[str, dict[str, dict[int, int]]] = {}
        self.service: dict[str, dict[str, dict[int, int]]] = {}
        self.failures: dict[str, dict[str, int]] = {}
        self.sink = sink
        self.flushed_at: float | None = None  # wall time of the last flush
        # The window closed: what finishes from now on is dropped at the flush (a request in flight at the
        # close is counted once, as unfinished with its age then; the hot path stays one dict update).
        self.closed = False

    def tally(self, request_type: str, name: str) -> Tally:
        key = (request_type, name)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        return tally

    def record(self, request_type: str, name: str, seconds: float, length: int = 0) -> None:
        tally = self.tally(request_type, name)
        us = int(seconds * 1e6 + 0.5) or 1  # sub-µs rounds up to the histogram's lowest value
        counts = tally.counts
        counts[us] = counts.get(us, 0) + 1
        tally.bytes += length

    def record_service(self, request_type: str, name: str, seconds: float) -> None:
        """Open loop: the actual send → last reply byte, beside the latency from the intended start."""
        if self.closed:
            return
        bucket = self.service.setdefault(request_type, {}).setdefault(name, {})
        us = int(seconds * 1e6 + 0.5) or 1
        bucket[us] = bucket.get(us, 0) + 1

    def record_failure(self, request_type: str, name: str) -> None:
        if self.closed:
            return
        by_name = self.failures.setdefault(request_type, {})
        by_name[name] = by_name.get(name, 0) + 1

    def flush(self) -> None:
        """What is new since the last flush: into the sink (Locust's statistics) and the counts to ship."""
        now = time.time()
        at = now if self.flushed_at is None else (self.flushed_at + now) / 2
        self.flushed_at = now
        for (request_type, name), tally in self.tallies.items():
            fresh = tally.counts
            if not fresh:
                continue
            tally.counts, length, tally.bytes = {}, tally.bytes, 0
            if self.closed:
                continue
            if self.sink is not None:
                self.sink(request_type, name, fresh, length, at)
            bucket = self.counts.setdefault(request_type, {}).setdefault(name, {})
            if not bucket:
                bucket.update(fresh)
                continue
            for us, n in fresh.items():
                bucket[us] = bucket.get(us, 0) + n

    def close(self) -> None:
        """The window closes: what finished is flushed and counted; nothing that finishes later is."""
        self.flush()
        self.closed = True

    def reset(self) -> None:
        """Forget everything recorded so far, flushed or not (a window opens: nothing before it counts)."""
        self.closed = False
        for tally in self.tallies.values():
            tally.counts, tally.bytes = {}, 0
        self.counts, self.failures, self.service = {}, {}, {}

    def drain(self) -> dict[str, Any]:
        """The counts so far as plain data (msgpack/JSON-safe), and a fresh start."""
        self.flush()
        data = {"counts": self.counts, "failures": self.failures, "service": self.service}
        self.counts, self.failures, self.service = {}, {}, {}
        return data


@dataclass
class LatencyStore:
    """Merged histograms on the master (or a local runner)."""

    histograms: dict[tuple[str, str], HdrHistogram] = field(default_factory=dict)
    service: dict[tuple[str, str], HdrHistogram] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    unfinished: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # ages, µs

    def add(self, data: dict[str, Any]) -> None:
        for field_name, target in (("counts", self.histograms), ("service", self.service)):
            for request_type, by_name in data.get(field_name, {}).items():
                for name, counts in by_name.items():
                    hist = target.get((request_type, name))
                    if hist is None:
                        hist = target[(request_type, name)] = new_histogram()
                    for us, n in counts.items():
                        hist.record_value(min(max(int(us), LOWEST_US), HIGHEST_US), n)
        for request_type, by_name in data.get("failures", {}).items():
            for name, n in by_name.items():
                key = (request_type, name)
                self.failures[key] = self.failures.get(key, 0) + n

    def add_unfinished(self, items: list[tuple[str, str, float]]) -> None:
        """Operations still in flight when the window closed: (type, name, age in s)."""
        for request_type, name, age in items:
            self.unfinished.setdefault((request_type, name), []).append(max(int(age * 1e6), LOWEST_US))

    def keys(self) -> list[tuple[str, str]]:
        return sorted(set(self.histograms) | set(self.failures) | set(self.unfinished))

    def total(self, *, locust_events_only: bool = True) -> int:
        """Requests recorded, successes + failures, as Locust counts them."""
        return sum(
            self.count(key) + self.failures.get(key, 0)
            for key in self.keys()
            if not (locust_events_only and key[0] in NOT_LOCUST_EVENTS)
        )

    def count(self, key: tuple[str, str]) -> int:
        hist = self.histograms.get(key)
        return hist.get_total_count() if hist is not None else 0

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for key in self.keys():
            rows.append(self._row(key, "latency", self.histograms.get(key)))
            if key in self.service:
                rows.append(self._row(key, "service", self.service[key]))
        return rows

    def _row(self, key: tuple[str, str], measure: str, hist: HdrHistogram | None) -> dict[str, Any]:
        count = hist.get_total_count() if hist is not None else 0
        ages = self.unfinished.get(key, []) if measure == "latency" else []
        row: dict[str, Any] = {
            "type": key[0],
            "name": key[1],
            "measure": measure,
            "count": count,
            "failures": self.failures.get(key, 0) if measure == "latency" else "",
            "unfinished": len(ages),
            "unfinished_max_age_us": max(ages) if ages else "",
        }
        if hist is not None and count:
            row["min_us"] = hist.get_min_value()
            for p in PERCENTILES:
                row[f"p{p:g}_us"] = hist.get_value_at_percentile(p)
            row["max_us"] = hist.get_max_value()
            row["mean_us"] = round(hist.get_mean_value(), 1)
        return row

    def write(self, csv_path: Path, hist_path: Path) -> None:
        """The percentile CSV, and every histogram HdrHistogram-encoded in a JSON file."""
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(self.rows())
        doc = {
            "format": "socklab-latency-histograms/2",
            "unit": "microseconds",
            "lowest": LOWEST_US,
            "highest": HIGHEST_US,
            "significant_figures": SIGNIFICANT_FIGURES,
            "histograms": [
                {
                    "type": key[0],
                    "name": key[1],
                    "count": self.count(key),
                    "failures": self.failures.get(key, 0),
                    # Standard HdrHistogram V2 compressed base64: any HdrHistogram library decodes it.
                    "hdr": self.histograms[key].encode().decode() if key in self.histograms else None,
                    "service_hdr": self.service[key].encode().decode() if key in self.service else None,
                    "unfinished_ages_us": sorted(self.unfinished.get(key, [])),
                }
                for key in self.keys()
            ],
        }
        hist_path.write_text(json.dumps(doc, indent=1))


@dataclass
class RecordedLatency:
    """A run's histograms read back: latency, service (open loop) and unfinished ages, by (type, name)."""

    latency: dict[tuple[str, str], HdrHistogram] = field(default_factory=dict)
    service: dict[tuple[str, str], HdrHistogram] = field(default_factory=dict)
    unfinished: dict[tuple[str, str], list[int]] = field(default_factory=dict)


def read_recorded(hist_path: Path) -> RecordedLatency:
    doc = json.loads(hist_path.read_text())
    out = RecordedLatency()
    for entry in doc["histograms"]:
        key = (entry["type"], entry["name"])
        if entry.get("hdr"):
            out.latency[key] = HdrHistogram.decode(entry["hdr"].encode())
        if entry.get("service_hdr"):
            out.service[key] = HdrHistogram.decode(entry["service_hdr"].encode())
        if entry.get("unfinished_ages_us"):
            out.unfinished[key] = list(entry["unfinished_ages_us"])
    return out


def read_histograms(hist_path: Path) -> dict[tuple[str, str], HdrHistogram]:
    """The latency histograms of a run, by (type, name)."""
    return read_recorded(hist_path).latency
