"""Findings: plain sentences read off the data, for one run and across runs."""

from __future__ import annotations

from typing import Any

from loadtest.client.accounting import waiting_words
from loadtest.declare.kinds import CONNECT, OPS
from loadtest.report.load import RunData, merged_histogram, traits_of, unfinished_ages
from loadtest.report.rules.summary import load_bound, shown


def findings(run: RunData, row: dict[str, Any]) -> list[str]:
    """Plain sentences read off the data: the rate and who was served, the pace of an open loop, the queues,
    what the connections cost, and what bounds the figures."""
    name = row["design"] or "server"
    one_at_a_time = bool(traits_of(run).get("serves_one_at_a_time"))
    return [
        *rate_findings(row, name),
        *user_findings(row, one_at_a_time, oldest_unfinished(run)),
        *pace_findings(run, row, name, one_at_a_time),
        *queue_findings(row, name, one_at_a_time),
        *cost_findings(row, name),
        *bound_findings(run, row, name),
    ]


def rate_findings(row: dict[str, Any], name: str) -> list[str]:
    """What was done, at what rate and latency."""
    if not row["requests"]:
        return []
    offered = num(row, "offered_rps")
    load = f"offered {offered:,.0f} req/s (open loop), achieved" if offered else "="
    return [
        f"{name}: {row['requests']:,} {row['op'] or 'requests'} in {row['duration_s']:g} s {load} "
        f"{row['rps']:,} req/s with {row['users']} users{served_note(row)}; latency p50 "
        f"{shown(row, 'latency_p50_ms')}, p99 {shown(row, 'latency_p99_ms')}"
        + (f" (from the intended start; service p99 {shown(row, 'service_p99_ms')})." if offered else ".")
    ]


def pace_findings(run: RunData, row: dict[str, Any], name: str, one_at_a_time: bool) -> list[str]:
    """Arrivals sent late (open loop), and the ceiling of a one-at-a-time server on SLEEP."""
    out = []
    if num(row, "late_arrivals"):
        out.append(
            f"{int(row['late_arrivals']):,} arrivals were sent late (≥ 1 ms after their intended start), "
            f"{row['late_lag_s']:,.2f} s of lag in all: their latency counts from the intended start."
        )
    if row["op"] == "SLEEP" and one_at_a_time and row["rps"] == row["rps"]:
        sleep_ms = (run.info.get("options") or {}).get("sleep_ms") or 0
        if sleep_ms:
            out.append(
                f"{name} serves one client at a time: {row['rps']} req/s against 1 / {sleep_ms} ms = "
                f"{1000 / sleep_ms:g} req/s, whatever the number of users."
            )
    return out


def overflow_finding(row: dict[str, Any], name: str) -> str:
    """The accept queue overflowing: the packets dropped, the SYN retransmissions, the connect times."""
    text = (
        f"{name}: in the window, {row['listen_overflows']:,} packets dropped at a full accept queue at backlog "
        f"{row['backlog']} (ListenOverflows, {row['counters_scope']} counters: SYNs, final handshake ACKs and early "
        f"data — not a count of SYNs); the accept queue peaked at {queue_peak(row)}"
    )
    text += syn_retrans_note(row)
    p99 = num(row, "connect_p99_ms")
    if p99 is not None and p99 >= 900:
        text += f"; connect p99 {shown(row, 'connect_p99_ms')}, the kernel's SYN retry schedule (about 1, 2, 3 s)"
    return text + "."


def queue_peak(row: dict[str, Any]) -> str:
    """The accept queue's peak in words: the kernel's, exact, beside the monitor's samples; or the samples'."""
    kernel = num(row, "kernel_peak_accept_queue")
    if kernel is None:
        return f"{row['peak_accept_queue']} (the monitor's samples)"
    why = ""
    backlog = num(row, "backlog")
    if backlog is not None and kernel > backlog + 1:
        # The kernel admits to a queue of backlog + 1; one more is seen when two handshakes complete on two CPUs
        # within microseconds (the length is checked without a lock), or an arrival lands while an accept() is
        # returning, where the tracer stamps it.
        over = kernel - backlog - 1
        why = (
            f", {over:.0f} over backlog + 1 for a moment: handshakes completing at once on two CPUs (the kernel "
            "checks the queue's length without a lock), or one landing while an accept() returned"
        )
    return f"{kernel:.0f} (the kernel's account{why}; the monitor's samples saw {row['peak_accept_queue']})"


def queue_findings(row: dict[str, Any], name: str, one_at_a_time: bool) -> list[str]:
    """The accept queue (overflowing, or holding connections), SYNs unanswered, SYN cookies, shared counters."""
    out = []
    overflows = row.get("listen_overflows")
    overflowed = isinstance(overflows, int) and overflows > 0
    if overflowed:
        out.append(overflow_finding(row, name))
    queued = row.get("peak_accept_queue")
    if isinstance(queued, int) and queued > 0 and not overflowed:
        out.append(
            f"up to {queued} connections waited in the accept queue, handshake done but not yet accepted"
            + (f": {name} serves one connection at a time." if one_at_a_time else ".")
        )
    syn_sent = row.get("peak_syn_sent")
    if isinstance(syn_sent, int) and syn_sent > 0:
        out.append(
            f"up to {syn_sent} clients sat in SYN_SENT: their SYNs were dropped and are retried on the kernel's "
            "schedule (about 1, 2, 3 s)."
        )
    cookies = row.get("syncookies_sent")
    if isinstance(cookies, int) and cookies > 0:
        out.append(
            f"{cookies:,} SYN cookies sent: the half-open queue was full too, so connect() returned for clients "
            f"the server held nothing for (connect p99 {shown(row, 'connect_p99_ms')}) while their first reply "
            f"byte waited (first-reply p99 {shown(row, 'first_reply_p99_ms')}, max "
            f"{shown(row, 'first_reply_max_ms')}; ≥ marks a wait that had not ended when the window closed)."
        )
    if row["counters_scope"] == "shared" and isinstance(overflows, int):
        out.append(
            "kernel counters are shared with the rest of the machine (no private network namespace): "
            "treat the overflow and retransmit figures as upper bounds."
        )
    return out


def cost_findings(row: dict[str, Any], name: str) -> list[str]:
    """TIME_WAIT at peak, and what each connection held cost the server."""
    out = []
    tw = row.get("peak_time_wait")
    if isinstance(tw, int) and tw > 0:
        out.append(f"{tw:,} sockets in TIME_WAIT at peak: the side that closes first holds TIME_WAIT for 60 s.")
    est = row.get("peak_established")
    if isinstance(est, int) and est >= 100 and row.get("peak_threads") == row.get("peak_threads"):
        out.append(
            f"{name} held {est:,} connections with {row['peak_threads']:,} thread"
            f"{'s' if row['peak_threads'] != 1 else ''}, "
            f"{row['rss_per_connection_bytes'] / 1024:,.1f} KiB of RSS growth and {row['peak_fds'] / est:.2f} fds "
            "per connection."
        )
    return out


def bound_findings(run: RunData, row: dict[str, Any], name: str) -> list[str]:
    """What makes the figures not the server's: the load generator's or the machine's CPU, failures, a death."""
    out = []
    bound = load_bound(row, run.info.get("cpus"))
    if bound == "client-bound":
        out.append(
            f"client-bound: the load generator ran at {row['loadgen_median_cpu_percent']:.0f}% of a core "
            "(median over the window); these throughput figures measure the load generator, not the server."
        )
    elif bound == "machine-bound":
        out.append(
            f"machine-bound: server and load generator together used {row['machine_cpu_percent']:.0f}% of "
            f"{run.info.get('cpus')} cores (median): they compete for the CPU, so neither figure is the server's alone."
        )
    if row["failures"]:
        out.append(f"{row['failures']:,} failures: {row['failure_classes']}.")
    stopped = run.info.get("server_stopped", {})
    if run.info.get("server") and stopped is None:
        died = num(row, "server_died_at_s")
        when = f" {died:g} s into the window (last seen alive by the monitor)" if died is not None else ""
        out.append(
            f"{name} did not stop cleanly: it died during the run, or had to be killed{when}; the CPU and "
            "client-bound figures cover only the time it was alive, and req/s is over the whole window."
        )
    return out


def syn_retrans_note(row: dict[str, Any]) -> str:
    """'; TCPSynRetrans N: the clients re-sent K SYNs …, the server S SYN-ACKs', or '' when none moved."""
    counter, clients = num(row, "tcp_syn_retrans"), num(row, "client_syn_retrans")
    server, retried = num(row, "server_synack_retrans"), num(row, "connections_syn_retried")
    if not counter and not clients:
        return ""
    parts = []
    if clients is not None:
        parts.append(
            f"the clients re-sent {int(clients):,} SYNs (measured by each connecting socket; "
            f"{int(retried or 0):,} connections of the window went through the SYN retry schedule)"
        )
    if server is not None:
        parts.append(
            f"the server re-sent {int(server):,} SYN-ACKs (to clients whose final ACK was dropped at the "
            "full accept queue, or whose SYN came again)"
        )
    # The counter and the sockets' re-sends cover the whole run, warm-up included: a SYN re-sent at the
    # window's open belongs to a connect that began before it.
    text = f"; over the whole run, TCPSynRetrans {int(counter or 0):,}"
    return text + (": " + ", ".join(parts) if parts else " (client SYNs and server SYN-ACKs together)")


def oldest_unfinished(run: RunData) -> tuple[float, float]:
    """The age in s of the oldest connect and of the oldest request still in flight at the window's close."""
    connects = [a for (kind, _), ages in run.unfinished.items() if kind == CONNECT for a in ages]
    requests = [a for (kind, _), ages in run.unfinished.items() if kind in OPS for a in ages]
    return max(connects, default=0) / 1e6, max(requests, default=0) / 1e6


def num(row: dict[str, Any], column: str) -> float | None:
    """A numeric figure of the row, None when absent or NaN."""
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def served_note(row: dict[str, Any]) -> str:
    starved = num(row, "users_starved")
    if not starved:
        return ""
    served = int(num(row, "users_served") or 0)
    return f" — but only {served} of {served + int(starved)} served"


def user_findings(row: dict[str, Any], one_at_a_time: bool, oldest: tuple[float, float] = (0.0, 0.0)) -> list[str]:
    """Who was served, who waited, and what was still in flight when the window closed.

    ``oldest``: the age in s of the oldest connect and of the oldest request still in flight then.
    """
    out = []
    served, starved = num(row, "users_served"), num(row, "users_starved")
    name, seconds = row["design"] or "server", float(row["duration_s"] or 0)
    connects, requests = int(num(row, "unfinished_connects") or 0), int(num(row, "unfinished_requests") or 0)
    if starved:
        total = int(served or 0) + int(starved)
        where = []  # every user's work in flight at the close, the served users' included
        if requests:
            where.append(
                f"{requests} request{'s' if requests != 1 else ''} waiting for a reply, the oldest for "
                f"{oldest[1]:.2f} s"
            )
        if connects:
            where.append(
                f"{connects} connect{'s' if connects != 1 else ''} not complete, the oldest for "
                f"{oldest[0]:.2f} s (no SYN-ACK yet: retrying on the kernel's SYN schedule)"
            )
        out.append(
            f"{name}: {int(served or 0)} of {total} users {'was' if served == 1 else 'were'} served; {int(starved)} "
            f"completed no request in the whole {seconds:g} s window"
            + (f"; when it closed, all users together had {' and '.join(where)}" if where else "")
            + (f": {name} serves one connection at a time." if one_at_a_time else ".")
        )
    elif connects or requests:
        out.append(
            f"{connects} connects and {requests} requests were still in flight when the window closed; "
            "percentiles they could still move are marked ≥ (lower bounds)."
        )
    fairness = num(row, "fairness")
    if fairness is not None and served and served > 1 and fairness < 0.9:
        out.append(
            f"unequal shares: Jain's fairness index {fairness:.2f} over per-user completed requests "
            "(1.0 = equal, 1/users = one user got everything)."
        )
    wait = num(row, "longest_user_wait_ms")
    if wait is not None and seconds and wait >= 1000:
        out.append(f"the longest any user went without a reply: {wait / 1000:,.2f} s.")
    return out


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def waiting(run: RunData) -> str:
    """'waiting ≥ 3.98 s: 9 requests; ≥ 1.20 s: 2 connects' — work still in flight when the window closed that had
    waited longer than the finished work's p99 and WAITING_FLOOR_MS; '' when none had."""
    groups = []
    for kinds, noun in ((OPS, "request"), ((CONNECT,), "connect")):
        hist = merged_histogram(run, kinds)
        p99 = hist.get_value_at_percentile(99) / 1000 if hist is not None and hist.get_total_count() else 0.0
        groups.append((noun, [a / 1000 for a in unfinished_ages(run, kinds)], p99))
    return waiting_words(groups)
