"""What a compare's answer is made of: the cells it read, each design's standing, and a scenario's answer
(``loadtest.report.rules.answer`` ranks, ``loadtest.report.rules.headlines`` says; the compare page and the
terminal show them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.report.load import RunData


@dataclass
class Cell:
    """One finished cell: its summary row and its run folder's data."""

    row: dict[str, Any]
    run: RunData

    @property
    def died(self) -> bool:
        return bool(self.run.info.get("server")) and self.run.info.get("server_stopped") is None


@dataclass
class Standing:
    rank: int
    design: str
    users: int
    rps: float
    estimate: float | None  # rps it could serve CPU-bound on its cores (estimate_of), when estimates rank (RULE)
    p50: str
    p99: str
    served: str
    shares: dict[str, float]  # where the time went: the window's account (every user's time), {} if unmeasured
    badges: list[str]
    waiting: str
    bounds: list[str] = field(default_factory=list)  # "client-bound", "machine-bound": the rate is not the server's
    cpu_share: float | None = None  # server CPU ÷ the CPU it could use (usable_cpu); None without a CPU figure
    no_estimate: str = ""  # NO_ESTIMATE where the scenario needed estimates and this design's means nothing

    @property
    def figure(self) -> str:
        if self.estimate is not None:
            return f"≈ {self.estimate:,.0f} est. (measured {self.rps:,.0f})"
        return f"{self.rps:,.0f}"


@dataclass
class ScenarioAnswer:
    scenario: str
    question: str
    users: int
    standings: list[Standing]
    headlines: list[str]
    findings: list[str] = field(default_factory=list)
    ranking: str = ""  # one line: which figure ranked this scenario, and why (RULE applied)
    from_connect: bool = False  # p50 and p99 from connect() start to the first reply byte (connect-per-request)

    @property
    def latency_heads(self) -> tuple[str, str]:
        """What the p50 and p99 columns measure: what a user waited, connect included where it connects each
        time (conn-storm's ECHO alone read p99.9 6.4 ms where its users waited 1.03 s on SYN retries)."""
        return ("p50 from connect", "p99 from connect") if self.from_connect else ("p50", "p99")
