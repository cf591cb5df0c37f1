"""Experiments from the literature: each a question, a claim and its source, the cells (arms) that test it
and a check that lays the measurement beside the source's numbers and gives a verdict per claim.

    socklab lab --list · socklab lab backlog · socklab lab all

An :class:`Experiment` is its own declaration, beside :class:`~loadtest.declare.scenarios.Scenario` (they share
what a cell runs, :class:`~loadtest.declare.scenarios.Workload`): its cells are its arms, not designs × loads —
each arm a design, a number of users and the options that make it differ (a backlog, a sysctl set in the
cell's own network namespace, a server flag) — and the figures its source published are declared here once
(``reported``), for its check to set beside the measurement.  ``loadtest.matrix.lab`` runs them; each check
registers itself on its experiment (``loadtest.report.rules.claims`` and ``workers``).  Every arm is bounded
(``seconds`` a cell) so that an experiment runs in under a minute on 2 cores.  No locust, no pandas at import.
"""

from __future__ import annotations

import os
import re
import select
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.declare.mix import parse
from loadtest.declare.scenarios import Workload
from servers.external import find_program


@dataclass(frozen=True)
class Arm:
    """One cell of an experiment: a label, the design, the users and the options that make it differ."""

    label: str
    design: str
    users: int
    options: dict[str, Any] = field(default_factory=dict)
    needs: str = ""  # a kernel feature or program it needs (see unavailable): "" none
    server_cmd: str = ""  # a server socklab did not write, as --server-cmd runs it: "" = the design


@dataclass(frozen=True)
class Reported:
    """A measurement the source published: who, under which setup, and its figures (name → value)."""

    who: str
    setup: str
    figures: dict[str, float]


@dataclass(frozen=True, eq=False, kw_only=True)
class Experiment(Workload):
    """A claim from the literature, its source, and the arms that test it."""

    claim: str
    source: str
    arms: tuple[Arm, ...]
    reported: tuple[Reported, ...] = ()  # the source's own figures, which its check sets beside the measurement
    seconds: float = 4.0  # measured seconds a cell
    warmup: float = 0.0
    # `socklab lab --quick` (and CI): the arms whose verdicts show without chance, for the least time that
    # shows them; () = every arm
    quick_arms: tuple[str, ...] = ()
    quick_seconds: float = 1.0

    @property
    def design(self) -> str:
        """The design every arm runs ('blocking'), or "" when the arms differ in it."""
        designs = {arm.design for arm in self.arms}
        return designs.pop() if len(designs) == 1 else ""

    def users_in_words(self) -> str:
        """'8 connect-per-request users': the arms' users, and their mode from the user class it declares."""
        mode = re.sub(r"(?<!^)(?=[A-Z])", "-", self.user_class.removesuffix("User")).lower()
        return f"{' or '.join(str(n) for n in sorted({arm.users for arm in self.arms}))} {mode} users"

    def mix_in_words(self) -> str:
        """'90 % ECHO and 10 % WORK 10 ms': the mix it declares (WORK's argument is µs, SLEEP's ms)."""
        return " and ".join(
            f"{e.weight} % {e.op}" + (f" {e.arg / 1000:g} ms" if e.op == "WORK" else f" {e.arg} ms" if e.arg else "")
            for e in parse(str(self.options.get("mix", "")))
        )


HELD_MS = 10_000  # SLEEP that holds a one-at-a-time server for the whole window: nothing more is accepted
BURST = 6  # clients beyond what the accept queue holds: they wait on the SYN retry schedule
MID_WINDOW = "mid-window"  # an option's value the lab sets to the middle of the cell's measured window (s)
ABORT, COOKIES = "net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_syncookies"
STARTUP_S = 0.6  # from a started server to the first user connecting, about


def _held(backlog: int, **options: object) -> dict[str, object]:
    """A one-at-a-time server held by its first client for the whole window, at this backlog."""
    return {"op": "SLEEP", "sleep-ms": HELD_MS, "backlog": backlog, "monitor-interval": 0.25, **options}


def _overflowing_handshakes(sysctl: str) -> dict[str, object]:
    """A burst of SYNs beyond the half-open queue, whose handshakes then overflow the accept queue — made to
    happen, with these sysctls in the arm's namespace.

    Idle users (one connection each, no second request in the window) against blocking at backlog 16: the
    first is served, 17 fill the accept queue and the other 32 SYNs are dropped.  The server closes each
    idle connection after 0.4 s and takes the next, so when the 32 re-send their SYNs ~1 s later, all from
    one timer run, the queue has a slot or two: every one of those SYNs is checked against it before any
    of their handshakes completes.  16 are admitted (the half-open limit is the backlog too); the rest
    get SYN cookies, or are dropped with tcp_syncookies=0.  When the final ACKs arrive one or two fit and
    the rest (15 here, every run) meet a full queue — dropped, or answered with RST under
    tcp_abort_on_overflow=1; a cookie's is dropped silently whatever that says (cookie_v4_check), so the
    abort arms turn cookies off.  Left to chance (connect-per-request users churning the queue), which of
    these happened changed from run to run."""
    return {"backlog": 16, "server-read-timeout": 0.4, "idle-interval": 60, "monitor-interval": 0.25, "sysctl": sysctl}


# What the sources measured, declared once: the experiments' sources cite them, their checks set them beside ours.
SS_ACCEPTQ = Reported("Cloudflare", "ss", {"qmax": 1024, "acceptq": 1025})
SHARED_QUEUE = Reported("Cloudflare", "shared queue", {"avg": 30.39, "max": 72.65, "stddev": 1.58})
QUEUE_PER_WORKER = Reported("Cloudflare", "SO_REUSEPORT", {"avg": 31.37, "max": 144.55, "stddev": 25.27})
SHARED_LISTENER = Reported("Herbert", "a shared listener", {"most ÷ fewest": 3})
LOOP_UNBLOCKED = Reported("Cloudflare", "moving blocking work out of nginx's loop", {"p99 better ×": 6})
NGINX_WORKER = "Cloudflare, 'Why does one NGINX worker take all the load?' (2017)"


def _latency(reported: Reported, unit: str = "") -> str:
    """'shared queue avg 30.39 ms, max 72.65, stddev 1.58': a latency the source reported, as it said it."""
    avg, top, sd = (reported.figures[k] for k in ("avg", "max", "stddev"))
    return f"{reported.setup} avg {avg}{unit}, max {top}, stddev {sd}"


BACKLOG = Experiment(
    "backlog",
    "How many connections does listen(B) hold?",
    claim="B + 1 complete handshakes wait in the accept queue; the rest of a burst waits on the SYN retry "
    "schedule (about 1, 2, 3 s)",
    user_class="ConnectPerRequestUser",
    source="the kernel's sk_acceptq_is_full() compares with '>' (include/net/sock.h); Cloudflare, 'SYN "
    f"packet handling in the wild' (2018): {SS_ACCEPTQ.setup} shows acceptq {SS_ACCEPTQ.figures['acceptq']} "
    f"for qmax {SS_ACCEPTQ.figures['qmax']}",
    reported=(SS_ACCEPTQ,),
    arms=tuple(Arm(f"B={b}", "blocking", b + 2 + BURST, _held(b)) for b in (1, 4, 16, 128)),
    # 10 ms apart: each SYN meets the queue as the ones before left it (a burst inside one round trip
    # would get SYN-ACKs and have its final ACKs dropped instead — abort-on-overflow's case)
    spawn_rate=100,
    quick_arms=("B=1", "B=16"),
    quick_seconds=1.5,
)
ABORT_ON_OVERFLOW = Experiment(
    "abort-on-overflow",
    "Drop silently or refuse?",
    claim="with net.ipv4.tcp_abort_on_overflow=1 a full queue answers the final ACK with RST: those clients "
    "fail fast instead of waiting on retries",
    user_class="IdleUser",
    source="ip-sysctl.rst (tcp_abort_on_overflow); Cloudflare, 'SYN packet handling in the wild' (2018)",
    arms=tuple(Arm(f"abort={v}", "blocking", 50, _overflowing_handshakes(f"{ABORT}={v},{COOKIES}=0")) for v in (0, 1)),
    quick_seconds=3.0,
)
SYN_COOKIES = Experiment(
    "syn-cookies",
    "What does a SYN burst beyond the half-open queue do?",
    claim="with tcp_syncookies=1 the overflow gets cookies: connect() succeeds while the server holds nothing; "
    "0 drops those SYNs; 2 sends cookies for every SYN",
    user_class="IdleUser",
    source="ip-sysctl.rst (tcp_syncookies); Linux commit 5ad37d5 (2008) on cookies with a full queue",
    arms=tuple(Arm(f"syncookies={v}", "blocking", 50, _overflowing_handshakes(f"{COOKIES}={v}")) for v in (0, 1, 2)),
    quick_arms=("syncookies=0", "syncookies=2"),
    quick_seconds=2.0,  # the SYNs re-sent at ~1 s inside the window
)
TIME_WAIT = Experiment(
    "time-wait",
    "Who holds TIME_WAIT, and when do the ports run out?",
    claim="the side that closes first holds TIME_WAIT (60 s); SO_LINGER 0 closes with a RST and holds none; "
    "28,232 ephemeral ports last about 470 new connections/s to one server for 60 s",
    user_class="ConnectPerRequestUser",
    source="RFC 793 §3.5 (TIME-WAIT, 2 MSL); ip-sysctl.rst (ip_local_port_range, tcp_tw_reuse); k6 issue "
    "#826 (port exhaustion under load)",
    arms=(
        Arm("client closes", "selectors", 10, {}),
        Arm("server closes", "selectors", 10, {"max-requests": 1}),
        Arm("SO_LINGER 0", "selectors", 10, {"linger0": True}),
        Arm(
            "1,000 ports",
            "selectors",
            10,
            {"sysctl": "net.ipv4.ip_local_port_range=40000 40999,net.ipv4.tcp_tw_reuse=0"},
        ),
        Arm(
            "1,000 ports, tw_reuse",
            "selectors",
            10,
            {"sysctl": "net.ipv4.ip_local_port_range=40000 40999,net.ipv4.tcp_tw_reuse=1"},
        ),
    ),
    seconds=3.0,
)
REUSEPORT_TAIL = Experiment(
    "reuseport-tail",
    "One shared accept queue, or one per worker?",
    claim="per-worker queues (SO_REUSEPORT) inflate the tail when some requests are slow: a connection hashed "
    "to a busy worker waits while another sits idle",
    user_class="ConnectPerRequestUser",
    options={"mix": "ECHO:90,WORK=10000:10", "server-workers": 4},
    source=f"{NGINX_WORKER}: 12 workers, 200 connections — {_latency(SHARED_QUEUE, ' ms')}; "
    f"{_latency(QUEUE_PER_WORKER)}",
    reported=(SHARED_QUEUE, QUEUE_PER_WORKER),
    arms=tuple(
        Arm(d, d, 8)
        for d in ("preforked", "preforked-reuseport", "preforked-selectors", "preforked-reuseport-selectors")
    ),
    quick_arms=("preforked", "preforked-reuseport"),
    quick_seconds=1.5,
)
ACCEPT_BALANCE = Experiment(
    "accept-balance",
    "Which worker gets the next connection?",
    claim="a blocking accept() hands connections out FIFO across the waiting workers; epoll wakes every waiter "
    "(the herd) and EPOLLEXCLUSIVE wakes one, LIFO, so the busiest keeps winning; SO_REUSEPORT spreads by hash",
    user_class="ConnectPerRequestUser",
    # 500 connections/s, on a schedule: workers idle between them, waiting — where who is woken shows
    options={"server-workers": 4, "arrival-rate": 500},
    source=f"{NGINX_WORKER}; Linux 4.5 EPOLLEXCLUSIVE (commit df0108c); Tom Herbert's SO_REUSEPORT commit "
    f"(2013): {SHARED_LISTENER.setup} up to {SHARED_LISTENER.figures['most ÷ fewest']}:1 unbalanced",
    reported=(SHARED_LISTENER,),
    arms=(
        Arm("accept()", "preforked", 10),
        Arm("epoll", "preforked-selectors", 10),
        Arm("EPOLLEXCLUSIVE", "preforked-selectors", 10, {"epoll-exclusive": True}, needs="epollexclusive"),
        Arm("SO_REUSEPORT", "preforked-reuseport-selectors", 10),
    ),
    seconds=3.0,
)
HEAD_OF_LINE = Experiment(
    "head-of-line",
    "What does one slow request do to the others?",
    claim="in a one-loop design a compute-heavy request stops every connection; workers of their own keep the "
    "fast requests fast",
    user_class="PersistentUser",
    # two users, two workers on two cores: a worker each, and no CPU shared between them
    options={"mix": "ECHO:95,WORK=10000:5", "server-workers": 2},
    source=f"Cloudflare, 'The problem with event loops' (2018): {LOOP_UNBLOCKED.setup} gave "
    f"{LOOP_UNBLOCKED.figures['p99 better ×']}× better p99 time to first byte",
    reported=(LOOP_UNBLOCKED,),
    arms=tuple(Arm(d, d, 2) for d in ("selectors", "asyncio", "threaded", "preforked", "preforked-selectors")),
    quick_arms=("selectors", "threaded", "preforked"),
)
ROLLING_RESTART = Experiment(
    "rolling-restart",
    "What happens to queued connections when a worker exits?",
    claim="closing one SO_REUSEPORT listener resets the handshakes and connections in its queue; with "
    "net.ipv4.tcp_migrate_req=1 (Linux 5.14) they move to another listener",
    user_class="ConnectPerRequestUser",
    options={"op": "SLEEP", "sleep-ms": 50, "backlog": 16, "server-workers": 4, "retire-worker-after": MID_WINDOW},
    source="Linux 5.14 tcp_migrate_req (Kuniyuki Iwashima's series, 2021); ip-sysctl.rst",
    arms=tuple(
        Arm(
            f"migrate={v}",
            "preforked-reuseport",
            60,
            {"sysctl": f"net.ipv4.tcp_migrate_req={v}"},
            needs="net.ipv4.tcp_migrate_req",
        )
        for v in (0, 1)
    ),
    quick_seconds=1.5,
)
NGINX_WORKERS = 4


def _nginx(*flags: str) -> str:
    """The --server-cmd of real nginx with this many workers and these flags (servers.external)."""
    return (
        f"nginx={sys.executable} -m servers.external nginx --port {{port}} --workers {NGINX_WORKERS} {' '.join(flags)}"
    )


NGINX_ACCEPT = Experiment(
    "nginx-accept",
    "Which nginx worker gets the next connection?",
    claim="one listener shared by nginx's workers with accept_mutex off (its default since 1.11.3: EPOLLEXCLUSIVE) "
    "wakes the worker that waited last, so one worker takes most connections; accept_mutex on lets the workers "
    "accept by turn; `listen … reuseport` gives each worker its own queue, spread evenly by hash, at the cost of "
    "the tail when a worker is busy",
    user_class="ConnectPerRequestUser",
    # 500 connections/s on a schedule: workers idle between them, waiting, where who is woken shows
    options={"protocol": "http", "arrival-rate": 500},
    source=f"{NGINX_WORKER}: the shared listener unbalanced, SO_REUSEPORT balanced with a worse tail — "
    f"{_latency(SHARED_QUEUE, ' ms')}; {_latency(QUEUE_PER_WORKER)}; nginx's docs (accept_mutex: 'worker processes "
    "will accept new connections by turn'); nginx 1.21.6's change log (ngx_reorder_accept_events)",
    reported=(SHARED_QUEUE, QUEUE_PER_WORKER),
    arms=(
        Arm("accept_mutex off", "nginx", 10, server_cmd=_nginx("--accept-mutex", "off"), needs="nginx"),
        Arm("accept_mutex on", "nginx", 10, server_cmd=_nginx("--accept-mutex", "on"), needs="nginx"),
        Arm("reuseport", "nginx", 10, server_cmd=_nginx("--reuseport"), needs="nginx"),
    ),
    seconds=3.0,
    quick_arms=("accept_mutex off", "reuseport"),
    quick_seconds=1.5,
)
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        BACKLOG,
        ABORT_ON_OVERFLOW,
        SYN_COOKIES,
        TIME_WAIT,
        REUSEPORT_TAIL,
        ACCEPT_BALANCE,
        HEAD_OF_LINE,
        ROLLING_RESTART,
        NGINX_ACCEPT,
    )
}


def unavailable(arm: Arm, isolated: bool) -> str:
    """Why this arm cannot run here ("" when it can): a kernel feature it needs, or a namespace for a sysctl."""
    if arm.options.get("sysctl") and not isolated:
        return "its sysctl needs a private network namespace (root), and socklab never changes the host's"
    if arm.needs == "nginx":
        return "" if find_program("nginx") else "nginx is not installed (bash .ci/setup --test installs it)"
    if arm.needs == "epollexclusive":
        return "" if hasattr(select, "EPOLLEXCLUSIVE") and kernel() >= (4, 5) else "EPOLLEXCLUSIVE needs Linux 4.5"
    if arm.needs.startswith("net."):
        have = Path("/proc/sys", *arm.needs.split(".")).exists()
        return "" if have else f"this kernel has no {arm.needs} (Linux 5.14 added tcp_migrate_req)"
    return ""


def kernel() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)
