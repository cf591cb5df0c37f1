"""The scenarios: each a question, the Locust options that ask it, what the answer should look like and its
default loads.  Declared once; ``socklab compare`` runs them, ``socklab sweep`` climbs the ones with a ladder,
and the compare page lays out the check a scenario has (unp30's table and conclusions today).

A check is a function of the finished runs and their summary rows; it returns a :class:`Check` — a title, a
note, a table and one verdict per claim — or None when the cells do not allow one.  It is attached by
reference, from above: the rules module that judges a scenario or an experiment imports its declaration and
registers on it (``@UNP30.check``), so a declaration never names its check and the link runs one way, rules →
declare, where the import-circle test sees it (``loadtest.report.rules.judges`` looks them up).  No locust, no
pandas at import: the CLI reads this module in a plain process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from loadtest.report.load import RunData


@dataclass
class Check:
    """What a scenario's check says about its cells."""

    title: str
    note: str
    table: pd.DataFrame | None
    verdicts: list[str]


CheckFunction = Callable[[list["RunData"], "pd.DataFrame"], "Check | None"]  # (runs, summary rows) → Check | None
F = TypeVar("F", bound=CheckFunction)


# eq=False: a declaration is itself, not its fields, so that it can key its check (each is declared once).
@dataclass(frozen=True, eq=False)
class Workload:
    """What a scenario and an experiment share: a name and a question, what each of their cells runs — a Locust
    user class, its options, how fast its users start, a count of connections instead of a timer — and the
    check a rules module registers on it."""

    name: str
    question: str
    _: KW_ONLY
    user_class: str
    options: dict[str, Any] = field(default_factory=dict)
    spawn_rate: float = 0.0  # users started a second; 0: all at once
    connections: int = 0  # > 0: the cell ends after this many connections, not on a timer (no warm-up)

    def check(self, function: F) -> F:
        """Register `function` as this declaration's check: ``@UNP30.check`` in the rules module that judges it."""
        if self in CHECKS:
            raise ValueError(f"{self.name} has a check already: {CHECKS[self].__qualname__}")
        CHECKS[self] = function
        return function


# Each declaration's check, filled as the rules modules that register them are imported.
CHECKS: dict[Workload, CheckFunction] = {}


@dataclass(frozen=True, eq=False)
class Scenario(Workload):
    """A question ``socklab compare`` asks of designs × loads: what the answer should look like, its default
    loads, and the first step of its ``socklab sweep`` ladder if it has one."""

    expect: str
    users: tuple[int, ...] = (10, 50)
    sweep_start: float | None = None  # req/s: the first step of `socklab sweep`'s ladder; None: no ladder


UNP30 = Scenario(
    "unp30",
    "Stevens' chapter 30: what does each design cost per connection?",
    "his client: 10 users, each connecting, asking for 4,000 bytes, reading them and closing, 5,000 "
    "connections per cell; server user and system CPU per connection, compared with the iterative "
    "baseline — fork per client by far the dearest, pools cheaper, threads cheaper than processes",
    user_class="ConnectPerRequestUser",
    options={"op": "ECHO", "payload-bytes": 0, "reply-bytes": 4000},
    users=(10,),
    connections=5000,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "echo",
            "What does one request cost?",
            "persistent 64 B ECHO: the load generator is usually the bottleneck (client_bound), and the report says so",
            user_class="PersistentUser",
            options={"op": "ECHO", "payload-bytes": 64},
        ),
        Scenario(
            "echo-pipelined",
            "What does one request cost when eight are in flight on each connection?",
            "persistent 64 B ECHO, --pipeline 8: server and client each handle several frames per system call, so "
            "per-request CPU falls on both sides — a different workload from echo, labelled as such",
            user_class="PersistentUser",
            options={"op": "ECHO", "payload-bytes": 64, "pipeline": 8},
        ),
        Scenario(
            "io-wait",
            "What happens when requests wait on I/O?",
            "SLEEP 20 ms: blocking serializes at about 50 req/s whatever the users; threaded and selectors scale "
            "with users",
            user_class="PersistentUser",
            options={"op": "SLEEP", "sleep-ms": 20},
            sweep_start=25.0,
        ),
        Scenario(
            "conn-storm",
            "What happens when clients connect faster than the server accepts?",
            "connect-per-request at backlog 10, users arriving at once: listen overflows on blocking, SYN-retry "
            "clusters at ~1, 2, 3 s in connect and first-reply time, TIME_WAIT on the client side",
            user_class="ConnectPerRequestUser",
            options={"op": "ECHO", "backlog": 10},
        ),
        Scenario(
            "arrivals",
            "What happens when connections arrive on a schedule, whether or not the server keeps up?",
            "open loop, 2,000 connections/s at backlog 10: a design that accepts too slowly overflows its queue at "
            "the rate chosen, latency counts from each intended start, and late arrivals are counted",
            user_class="ConnectPerRequestUser",
            options={"op": "ECHO", "arrival-rate": 2000, "backlog": 10},
            users=(10,),
            sweep_start=250.0,
        ),
        UNP30,
        Scenario(
            "seed",
            "What does the lesson's own server do when more clients come than its backlog holds?",
            "the seed's client against listen(10): 50 one-shot clients (connect, one message, wait for the server's "
            "close), one connection each, arriving at once; the accept queue holds 11, the rest of the burst is "
            "dropped (ListenOverflows) and those clients wait on the SYN schedule: ~1 s, some ~3 s, every one served",
            user_class="OneShotUser",
            options={"backlog": 10},
            users=(50,),
            connections=50,
        ),
        Scenario(
            "cpu",
            "What happens when requests compute?",
            "WORK 2 ms: the GIL — threaded is no better than blocking; selectors stalls its loop",
            user_class="PersistentUser",
            options={"op": "WORK", "work-us": 2000},
            sweep_start=100.0,
        ),
        Scenario(
            "many-idle",
            "What does a connection cost when it mostly waits?",
            "IdleUser, thousands of connections: threads, RSS and fds per connection",
            user_class="IdleUser",
            # The question is the cost, not the overflow or the cap: room for every user.
            options={"idle-interval": 5, "backlog": 4096, "max-connections": 4096},
            users=(1000, 3000),
        ),
    )
}


@dataclass(frozen=True)
class Lesson:
    """A part of the default compare: one scenario, the designs that show its lesson, at these loads."""

    scenario: str
    designs: tuple[str, ...]
    users: tuple[int, ...]
    shows: str


# `socklab compare` with no options: the seed's lessons in about two minutes, four designs standing for
# the four process models (one at a time, a thread per connection, pre-forked processes, one event loop).
QUICK: tuple[Lesson, ...] = (
    Lesson(
        "io-wait",
        ("blocking", "threaded", "preforked", "selectors"),
        (10, 50),
        "one at a time against concurrent: blocking stays at 1 / 20 ms, the others scale with users, "
        "a pool of 4 workers stops at 4 / 20 ms",
    ),
    Lesson(
        "cpu",
        ("blocking", "threaded", "preforked", "selectors"),
        (4,),
        "compute against I/O wait: one GIL caps threads and the event loop at one core; processes use two "
        "(4 users: one per worker of the pool)",
    ),
    Lesson(
        "conn-storm",
        ("blocking", "threaded", "selectors"),
        (50,),
        "the accept queue overflowing: packets dropped, SYN retries, clients starved",
    ),
    Lesson(
        "seed",
        ("seed",),
        (50,),
        "the lesson's own server: one message read, then close(); 50 clients against listen(10)",
    ),
    Lesson(
        "echo",
        ("blocking", "threaded", "selectors"),
        (50,),
        "what one request costs: the load generator's limit, and capacity estimated from server CPU",
    ),
)
# `socklab compare --full`: these scenarios × every design × each scenario's loads.
DEFAULT_SCENARIOS: tuple[str, ...] = ("echo", "io-wait", "conn-storm")
SWEEP_SCENARIOS: tuple[str, ...] = tuple(name for name, s in SCENARIOS.items() if s.sweep_start is not None)
DEFAULT_SWEEP: tuple[str, ...] = ("io-wait",)
