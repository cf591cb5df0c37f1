"""Locust's own outputs — its CSVs, its JSON, its HTML report — routed into the run folder and written last.

The private calls it makes are :mod:`loadtest.glue.locust_private`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent

from loadtest.glue import locust_private


@dataclass
class FinalOutputs:
    """Locust's CSVs and JSON, which socklab writes itself at the very end (after the last worker
    report): Locust's own CSV writer stops before those arrive, and its ``--json-file`` writer resets
    every entry as it strips it.  The CSVs are still rewritten every few seconds while the run goes on.
    The JSON always goes into the run folder (the report reads its per-second counts), and also where the
    user's ``--json-file`` named."""

    writer: Any
    greenlet: Any
    prefix: str
    json_paths: list[str]

    @classmethod
    def route(cls, environment: Any, folder: Path) -> FinalOutputs:
        """Locust's outputs into the run folder unless the user named them; its own writers stood down."""
        options = environment.parsed_options
        if not options.html_file:
            options.html_file = str(folder / "locust_report.html")
        json_paths = [str(folder / "locust_stats.json")]
        if options.json_file:
            json_paths.append(f"{options.json_file}.json")  # Locust adds ".json"; so do we
        options.json_file = None
        prefix = options.csv_prefix or str(folder / "locust")
        full_history = True if not options.csv_prefix else bool(options.stats_history_enabled)
        options.csv_prefix = None  # Locust made its writer before `init` and spawns it only if this is set
        writer = locust_private.csv_writer(environment, prefix, full_history)
        return cls(writer, gevent.spawn(writer.stats_writer), prefix, json_paths)

    def write(self, environment: Any) -> None:
        self.greenlet.kill(block=True)
        self.writer.close_files()
        locust_private.write_final_csvs(self.writer, self.prefix)
        stats = environment.runner.stats.serialize_stats()  # last: it resets each entry as it strips it
        for path in self.json_paths:
            with open(path, "w") as f:
                json.dump(stats, f, indent=4)
