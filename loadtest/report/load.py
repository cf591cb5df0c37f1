"""Loading a run folder: the files a run leaves, as plain data (the report's only input)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from loadtest.client.latency import HIGHEST_US, RecordedLatency, new_histogram, read_recorded
from loadtest.report.rules import timeline

PER_SECOND = ["type", "name", "second", "count"]  # requests done in each whole second, per Locust entry


@dataclass
class RunData:
    path: Path
    info: dict[str, Any]
    latency: pd.DataFrame  # socklab_latency.csv; `measure` is latency (from the intended start) or service
    histograms: dict[tuple[str, str], HdrHistogram]
    monitor: pd.DataFrame | None
    per_second: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PER_SECOND))  # Locust's counts
    service: dict[tuple[str, str], HdrHistogram] = field(default_factory=dict)  # open loop only
    unfinished: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # ages (µs) at the window's close
    users: pd.DataFrame | None = None  # socklab_users.csv: one row per user
    connections: pd.DataFrame | None = None  # every connection, client and server joined (report.timeline)
    timeline_note: str = ""  # why some stages are not measured ("" when all are)

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or self.path.name)


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a socklab run folder (no run.json)")
    info = json.loads(info_path.read_text())
    if "variant" in info:  # recorded before "design" was the one word
        info.setdefault("design", info.pop("variant"))
    latency_path = run_dir / "socklab_latency.csv"
    latency = pd.read_csv(latency_path) if latency_path.exists() else pd.DataFrame(columns=["type", "name"])
    if "measure" not in latency:  # recorded before the service measure existed
        latency["measure"] = "latency"
    hist_path = run_dir / "socklab_latency_hist.json"
    recorded = read_recorded(hist_path) if hist_path.exists() else RecordedLatency()
    monitor_path = run_dir / "monitor.csv"
    monitor = pd.read_csv(monitor_path) if monitor_path.exists() else None
    if monitor is not None and monitor.empty:
        monitor = None
    per_second = read_per_second(run_dir / "locust_stats.json")
    users_path = run_dir / "socklab_users.csv"
    users = pd.read_csv(users_path) if users_path.exists() else None
    connections, note = timeline.join_run(run_dir, info)
    return RunData(
        run_dir,
        info,
        latency,
        recorded.latency,
        monitor,
        per_second,
        recorded.service,
        recorded.unfinished,
        users,
        connections,
        note,
    )


def merged_histogram(
    run: RunData, types: tuple[str, ...], *, service: bool = False, with_unfinished: bool = False
) -> HdrHistogram | None:
    """One histogram of these request types; with_unfinished adds the ages of what never finished
    (lower bounds of their latencies), so percentiles they would move are moved."""
    source = run.service if service else run.histograms
    hists = [h for (kind, _), h in source.items() if kind in types]
    ages = [a for (kind, _), v in run.unfinished.items() if kind in types for a in v] if with_unfinished else []
    if not hists and not ages:
        return None
    if not hists:
        merged = new_histogram()
        for age in ages:
            merged.record_value(min(age, HIGHEST_US))
        return merged
    merged = HdrHistogram(
        hists[0].lowest_trackable_value, hists[0].highest_trackable_value, hists[0].significant_figures
    )
    for h in hists:
        merged.add(h)
    for age in ages:
        merged.record_value(min(age, HIGHEST_US))
    return merged


def unfinished_ages(run: RunData, types: tuple[str, ...]) -> list[int]:
    return [a for (kind, _), v in run.unfinished.items() if kind in types for a in v]


def server_died_at(run: RunData) -> float | None:
    """When a server that died during the run was last seen alive (the monitor stops with it); None if it
    stopped cleanly, or if socklab did not start it."""
    if not run.info.get("server") or run.info.get("server_stopped") is not None or run.monitor is None:
        return None
    return float(run.monitor["timestamp"].iloc[-1])


def window_rows(run: RunData) -> pd.DataFrame | None:
    """Monitor rows inside the measured window while the server was alive (all rows if the window is
    unknown): flags read off them describe the server under load, not the load against nothing."""
    mon = run.monitor
    if mon is None:
        return None
    window = run.info.get("window") or {}
    if window.get("start") and window.get("stop"):
        stop = window["stop"]  # a sample covers the interval before it: one after the close is not the window's
        died = server_died_at(run)
        if died is not None:
            stop = min(stop, died)
        inside = mon[(mon["timestamp"] >= window["start"]) & (mon["timestamp"] <= stop)]
        if len(inside):
            return inside
    return mon


def traits_of(run: RunData) -> dict[str, bool]:
    """The server's declared traits (serves_one_at_a_time, uses_threads, uses_processes).

    From run.json, where the server announced them; a run recorded before traits were
    announced gets its registered design's class attributes.
    """
    traits = (run.info.get("server") or {}).get("traits")
    if traits:
        return dict(traits)
    from servers import DESIGNS, design_class

    design = run.info.get("design", "")
    return design_class(design).traits() if design in DESIGNS else {}


def read_per_second(path: Path) -> pd.DataFrame:
    """Requests done in each whole second, per entry, from Locust's final statistics (``num_reqs_per_sec``:
    counted in the second Locust was told of them, which socklab does in bulk every ~100 ms)."""
    rows = []
    if path.exists():
        for entry in json.loads(path.read_text()):
            for second, count in (entry.get("num_reqs_per_sec") or {}).items():
                rows.append((entry.get("method") or "", entry.get("name") or "", int(second), int(count)))
    return pd.DataFrame(rows, columns=PER_SECOND)
