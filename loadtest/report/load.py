"""Loading a run folder: the files a run leaves, as plain data (the report's only input)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from loadtest.latency import read_histograms


@dataclass
class RunData:
    path: Path
    info: dict[str, Any]
    latency: pd.DataFrame
    histograms: dict[tuple[str, str], HdrHistogram]
    monitor: pd.DataFrame | None
    history: pd.DataFrame | None

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or self.path.name)


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a socklab run folder (no run.json)")
    info = json.loads(info_path.read_text())
    latency_path = run_dir / "socklab_latency.csv"
    latency = pd.read_csv(latency_path) if latency_path.exists() else pd.DataFrame(columns=["type", "name"])
    hist_path = run_dir / "socklab_latency_hist.json"
    histograms = read_histograms(hist_path) if hist_path.exists() else {}
    monitor_path = run_dir / "monitor.csv"
    monitor = pd.read_csv(monitor_path) if monitor_path.exists() else None
    if monitor is not None and monitor.empty:
        monitor = None
    history_path = run_dir / "locust_stats_history.csv"
    history = pd.read_csv(history_path) if history_path.exists() else None
    return RunData(run_dir, info, latency, histograms, monitor, history)


def merged_histogram(run: RunData, types: tuple[str, ...]) -> HdrHistogram | None:
    hists = [h for (kind, _), h in run.histograms.items() if kind in types]
    if not hists:
        return None
    merged = HdrHistogram(
        hists[0].lowest_trackable_value, hists[0].highest_trackable_value, hists[0].significant_figures
    )
    for h in hists:
        merged.add(h)
    return merged


def window_rows(run: RunData) -> pd.DataFrame | None:
    """Monitor rows inside the measured window (all rows if the window is unknown)."""
    mon = run.monitor
    if mon is None:
        return None
    window = run.info.get("window") or {}
    if window.get("start") and window.get("stop"):
        inside = mon[(mon["timestamp"] >= window["start"]) & (mon["timestamp"] <= window["stop"] + 0.5)]
        if len(inside):
            return inside
    return mon




def traits_of(run: RunData) -> dict[str, bool]:
    """The server's declared traits (serves_one_at_a_time, uses_threads, uses_processes).

    From run.json, where the server announced them; a run recorded before traits were
    announced gets its registered variant's class attributes.
    """
    traits = (run.info.get("server") or {}).get("traits")
    if traits:
        return dict(traits)
    from servers import VARIANTS, variant_class

    variant = run.info.get("variant", "")
    return variant_class(variant).traits() if variant in VARIANTS else {}
