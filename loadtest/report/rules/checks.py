"""The run's self-check: the invariants its own figures must obey, evaluated in every run.

An instrument that explains (a share, a cause, a rank) can contradict itself in ways no single figure
shows: shares that add up to 175 %, a queue deeper than its backlog, a p99 that is really the age of
work the harness itself stalled.  Each check below compares figures that come from different sources
(the µs histograms, Locust's own counts, the per-user ledgers, the kernel's counters, the monitor's
samples, the joined connection records) and says ``pass`` or ``fail`` with the figures it compared.
``checks.csv`` in the run folder holds one row per check; a failure is a line in the terminal, a red
box at the top of ``report.html`` and ``compare.html``, and exit status 4 for ``socklab compare``.

A check that has nothing to compare (no monitor, no connection records, a run recorded before the
figure existed) is ``n/a``, never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.declare.kinds import OPS
from loadtest.report.load import RunData, merged_histogram, unfinished_ages, window_rows
from loadtest.report.rules.stages import STAGES, WINDOW_STAGES

CHECKS_FILE = "checks.csv"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, n/a
    figures: str  # what was compared, with the values

    @property
    def failed(self) -> bool:
        return self.status == "fail"


Outcome = tuple[str, str]  # (pass | fail | n/a, the figures compared or why none were)
Rule = Callable[[RunData, dict[str, Any]], Outcome]
RULES: list[tuple[str, str, Rule]] = []  # (name, what must hold, rule): declared once, below


def rule(holds: str) -> Callable[[Rule], Rule]:
    """Register a check: its name is the function's, ``holds`` says what must hold."""

    def add(fn: Rule) -> Rule:
        RULES.append((fn.__name__, holds, fn))
        return fn

    return add


def verdict(ok: bool, figures: str) -> Outcome:
    return ("pass" if ok else "fail", figures)


def na(why: str) -> Outcome:
    return ("n/a", why)


def number(row: dict[str, Any], column: str) -> float | None:
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


@rule("ops counted = Locust's ops = the load processes' ledgers; their successes = the users'")
def requests_agree(run: RunData, row: dict[str, Any]) -> Outcome:
    counted = number(row, "requests")
    if counted is None:
        return na("no requests counted")
    sources = {"histograms": counted}
    per_second = run.per_second
    if len(per_second):
        sources["Locust per-second"] = float(per_second.loc[per_second["type"].isin(OPS), "count"].sum())
    processes = run.info.get("load_processes") or []
    if processes:
        sources["load processes"] = float(sum(int(p.get("requests", 0)) for p in processes))
    ok = len(set(sources.values())) == 1
    figures = "; ".join(f"{k} {v:,.0f}" for k, v in sources.items())
    if processes and run.users is not None and len(run.users):
        # A user's ledger counts its successes (its failures include failed connects, which are no ops).
        succeeded = float(sum(int(p.get("requests", 0)) - int(p.get("failures", 0)) for p in processes))
        users = float(run.users["requests"].sum())
        ok = ok and users == succeeded
        figures += f"; successes: users {users:,.0f}, load processes {succeeded:,.0f}"
    return verdict(ok, figures)


@rule("served + starved = the users the run had")
def users_add_up(run: RunData, row: dict[str, Any]) -> Outcome:
    served, starved = number(row, "users_served"), number(row, "users_starved")
    users = number(row, "users")
    if served is None or starved is None or users is None:
        return na("no per-user ledgers")
    return verdict(served + starved == users, f"served {served:.0f} + starved {starved:.0f} vs users {users:.0f}")


@rule("the window's account: every stage's share adds up to 1")
def shares_add_to_1(run: RunData, row: dict[str, Any]) -> Outcome:
    shares = [number(row, f"window_share_{s}") for s in WINDOW_STAGES]
    if all(v is None for v in shares):
        return na("no window account (no connection records)")
    total = sum(v for v in shares if v is not None)
    return verdict(abs(total - 1) <= 0.002, f"Σ window shares {total:.4f}")


@rule("the window's account holds no more than every user's window: users × seconds")
def no_time_counted_twice(run: RunData, row: dict[str, Any]) -> Outcome:
    accounted, users, seconds = (number(row, c) for c in ("window_user_s", "users", "duration_s"))
    if accounted is None or not users or not seconds:
        return na("no window account")
    if number(row, "server_died_at_s") is not None:  # its log was cut with it: the joins of its last are not whole
        return na("the server died during the run: its connection records end with it")
    # Two stages of one user overlapping (a late stamp extending one past the next) would pass users × window.
    return verdict(
        accounted <= users * seconds * 1.002 + 0.01,
        f"accounted {accounted:,.3f} user-s vs {users:.0f} users × {seconds:,.3f} s",
    )


@rule("no connection stage and no share is negative")
def no_stage_negative(run: RunData, row: dict[str, Any]) -> Outcome:
    frame = run.connections
    shares = [v for s in WINDOW_STAGES if (v := number(row, f"window_share_{s}")) is not None]
    if frame is None and not shares:
        return na("no connection records")
    worst = min(shares, default=0.0)
    stages = [s for s in STAGES if frame is not None and s in frame]
    if stages:
        worst = min(worst, float(frame[stages].min(skipna=True).min(skipna=True)))
    # Stages are in ms from float seconds: allow the rounding of a µs.
    return verdict(not worst < -0.001, f"smallest stage or share {worst:,.4f}")


@rule("the deepest accept queue ≤ backlog + 1")
def accept_queue_within_backlog(run: RunData, row: dict[str, Any]) -> Outcome:
    peak, backlog = number(row, "peak_accept_queue"), number(row, "backlog")
    if peak is None or not backlog:
        return na("no listener seen by the monitor")
    kernel = number(row, "kernel_peak_accept_queue")
    if kernel is None:
        return verdict(peak <= backlog + 1, f"peak accept queue {peak:.0f} vs backlog {backlog:.0f} + 1")
    # The kernel's stamps put an accept() at its return: one more, at most, while it is returning.
    ok = peak <= backlog + 1 and kernel <= backlog + 2
    return verdict(ok, f"peak accept queue {peak:.0f} (the kernel's: {kernel:.0f}) vs backlog {backlog:.0f} + 1")


@rule("connections in the accept queue at the close ≤ backlog + 1 (the rest half-open)")
def unaccepted_fit_the_queue(run: RunData, row: dict[str, Any]) -> Outcome:
    never, half, backlog = (number(row, c) for c in ("connections_never_accepted", "connections_half_open", "backlog"))
    if never is None or half is None or not backlog:
        return na("no joined connection records, or no listener seen")
    queued = never - half
    return verdict(
        queued <= backlog + 1 and half >= 0,
        f"not accepted at the close {never:.0f} = {queued:.0f} queued + {half:.0f} half-open; "
        f"backlog {backlog:.0f} + 1",
    )


@rule("a fully served run's p99 is not the age of work in flight at the close")
def p99_not_an_in_flight_age(run: RunData, row: dict[str, Any]) -> Outcome:
    p99, starved = number(row, "latency_p99_ms"), number(row, "users_starved")
    if p99 is None or starved is None:
        return na("no latency")
    if starved:
        return na(f"{starved:.0f} users starved: their waits are rightly in the tail")
    ages = [a / 1000 for a in unfinished_ages(run, OPS)]
    near = [a for a in ages if abs(a - p99) <= 0.002 * p99]
    finished = merged_histogram(run, OPS)
    alone = finished.get_value_at_percentile(99) / 1000 if finished is not None else 0.0
    # The p99 is an in-flight age and the finished requests alone would put it well below: the work in flight
    # at the close was held up (the harness stalled), and that hold-up is the tail the run prints.
    set_by_the_close = bool(near) and p99 > 1.1 * alone
    return verdict(
        not set_by_the_close,
        f"p99 {p99:,.3f} ms (finished only {alone:,.3f} ms); "
        f"{len(ages)} in flight at the close, {len(near)} of them {p99:,.3f} ms old",
    )


@rule("ListenDrops = ListenOverflows + TCPReqQFullDrop, inside the window")
def listen_drops_split(run: RunData, row: dict[str, Any]) -> Outcome:
    drops, overflows = number(row, "listen_drops"), number(row, "listen_overflows")
    if drops is None or overflows is None:
        return na("no kernel counters")
    edges = (run.info.get("window") or {}).get("counters")
    if edges:  # the window's, read at its edges, like the two above
        full = float(edges["close"].get("TCPReqQFullDrop", 0) - edges["open"].get("TCPReqQFullDrop", 0))
    elif run.monitor is not None and "TcpExt_TCPReqQFullDrop" in run.monitor:
        full = float(run.monitor["TcpExt_TCPReqQFullDrop"].iloc[-1])
    else:
        full = 0.0
    return verdict(
        drops == overflows + full,
        f"ListenDrops {drops:,.0f} vs ListenOverflows {overflows:,.0f} + TCPReqQFullDrop {full:,.0f}",
    )


# The monitor exits with the server, so its counters stop there while the clients' own records go on.
DIED = "the server died during the run: the kernel counters stop with it, the clients' records do not"


def server_died(run: RunData) -> bool:
    """A server socklab started that gave no stopped line (its own, or a command's exit status)."""
    return bool(run.info.get("server")) and run.info.get("server_stopped") is None


@rule("TCPSynRetrans less the clients' own SYN re-sends leaves ≥ 0 for the server")
def synack_split_not_negative(run: RunData, row: dict[str, Any]) -> Outcome:
    server = number(row, "server_synack_retrans")
    if server is None:
        return na("counters not the run's own (not isolated)")
    if server_died(run):
        return na(DIED)
    return verdict(
        server >= 0,
        f"TCPSynRetrans {number(row, 'tcp_syn_retrans') or 0:,.0f} less clients' "
        f"{number(row, 'client_syn_retrans') or 0:,.0f} = {server:,.0f} SYN-ACKs",
    )


@rule("the kernel trace's SYN-ACK re-sends, connection by connection, add up to the counters' server share")
def kernel_synacks_add_up(run: RunData, row: dict[str, Any]) -> Outcome:
    traced, server = number(row, "kernel_synack_retrans"), number(row, "server_synack_retrans")
    if traced is None or server is None:
        return na("no whole kernel trace, or counters not the run's own (not isolated)")
    if server_died(run):
        return na(DIED)
    return verdict(traced == server, f"{traced:,.0f} traced vs {server:,.0f} from TCPSynRetrans less the clients'")


@rule("server CPU per request × rate = the server's CPU share over the window")
def cpu_adds_up(run: RunData, row: dict[str, Any]) -> Outcome:
    per_request, rps, seconds = (number(row, c) for c in ("server_cpu_us_per_request", "rps", "duration_s"))
    win = window_rows(run)
    if per_request is None or not rps or not seconds or win is None or len(win) < 4:
        return na("no server CPU per request, or too few monitor samples")
    busy = per_request * rps / 1e4  # % of one core
    sampled = float(win["server_cpu_percent"].iloc[1:].mean())  # each sample's % covers the interval before it
    # The samples count 10 ms ticks at ~2 Hz: at low CPU the two readings may differ by five ticks over the
    # window (1.3 points over 3.9 s); where the load comes in bursts and stalls (a connection storm) by about a
    # third of the share (conn-storm/blocking read 31.4 % against 24.3 %), never more than 10 points.
    tolerance = max(min(0.35 * sampled, 10.0), 100 * 5 * 0.01 / seconds)
    # And they leave the window's edges out: what the server did there, from idle to as busy as it was, moves
    # the window's figure by up to that share of the window (a counted cell that ended its work before its
    # close: unp30/forking read 166.2 % over the window against 179.0 % sampled, 0.3 s of 2.3 s unsampled).
    covered = float(win["timestamp"].iloc[-1] - win["timestamp"].iloc[0])
    tolerance += max(0.0, seconds - covered) / seconds * max(busy, sampled)
    return verdict(
        abs(busy - sampled) <= tolerance,
        f"{per_request:,.2f} µs × {rps:,.1f}/s = {busy:,.1f} % vs the monitor's mean {sampled:,.1f} %",
    )


def evaluate(run: RunData, row: dict[str, Any]) -> list[Check]:
    out = []
    for name, _holds, fn in RULES:
        try:
            status, figures = fn(run, row)
        except Exception as exc:  # a check that cannot be evaluated is said so, never a crash of the report
            status, figures = "n/a", f"could not be evaluated: {exc}"
        out.append(Check(name, status, figures))
    return out


def write(folder: Path, checks: list[Check]) -> Path:
    holds = {name: text for name, text, _ in RULES}
    path = Path(folder) / CHECKS_FILE
    pd.DataFrame(
        [{"check": c.name, "holds": holds.get(c.name, ""), "status": c.status, "figures": c.figures} for c in checks]
    ).to_csv(path, index=False)
    return path


def failed_lines(checks: list[Check], where: str = "") -> list[str]:
    prefix = f"{where}: " if where else ""
    return [f"{prefix}self-check failed: {c.name} ({c.figures})" for c in checks if c.failed]


def box_html(lines: list[str]) -> str:
    """The red box at the top of a page: each failed check, or nothing."""
    if not lines:
        return ""
    import html

    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (
        "<div class='selfcheck' style='border:2px solid #c00;background:#fee;padding:0.5em 1em;margin:1em 0'>"
        f"<b>Self-check failed</b> — these figures contradict each other or theory; read them with care:"
        f"<ul>{items}</ul></div>"
    )
