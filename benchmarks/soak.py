"""Soak: every design against abuse — mutated frames, slow and unreading clients, thousands of idle
connections — with well-behaved clients in between, then SIGTERM.  Longer than CI; run it by hand.

    python -m benchmarks.soak [--designs blocking,threaded,...] [--frames 10000] [--idle 5000]

Per design it prints: crashes (the server gone before SIGTERM), good requests failed, fds and RSS
before and after, the stop time, and rejected connections; it exits non-zero on any regression.

The mutations start from valid frames: a flipped byte, a truncation, random length and op, a huge
reply_len, a huge length prefix, garbage after a good frame, random bytes.  Each goes on its own
connection, which then closes its write side and reads until the server closes (bounded by a
timeout), so a server that answers, refuses or waits for more bytes is each exercised.  A
one-at-a-time server (blocking) cannot hold thousands of idle connections — they wait in the accept
queue or on the SYN schedule — so its idle phase holds `backlog + 1` and says so; a pooled design
serves `--workers` connections at a time, so no good client is checked while its idle ones are held.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import resource
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from loadtest.matrix.processes import ServerProcess
from servers import design_class, speaking
from servers.protocol import Op, Status, encode_request, read_response

READ_TIMEOUT = 2.0  # the server's --read-timeout for the soak: bounds what slow clients can hold
GOOD_TIMEOUT = 15.0  # a good client's patience: longer than anything a bad client may hold a one-at-a-time server
MAX_RSS_GROWTH = 64 << 20
MAX_STOP_S = 2.0


def valid_frame(rng: random.Random) -> bytes:
    op = rng.choice([Op.ECHO, Op.SLEEP, Op.WORK])
    arg = {Op.ECHO: 0, Op.SLEEP: rng.randint(0, 3), Op.WORK: rng.randint(0, 200)}[op]
    return encode_request(op, arg, rng.randbytes(rng.randint(0, 64)), rng.choice([0, 0, 0, 16, 4096]))


def mutate(rng: random.Random) -> bytes:
    frame = bytearray(valid_frame(rng))
    kind = rng.randrange(8)
    if kind == 0:  # a flipped byte anywhere
        i = rng.randrange(len(frame))
        frame[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncated
        del frame[rng.randrange(len(frame)) :]
    elif kind == 2:  # random length prefix
        frame[0:4] = rng.randrange(0, 1 << 32).to_bytes(4, "big")
    elif kind == 3:  # random op
        frame[4] = rng.randrange(256)
    elif kind == 4:  # huge reply_len
        frame[9:13] = rng.randrange(1 << 20, 1 << 32).to_bytes(4, "big")
    elif kind == 5:  # garbage after a good frame
        frame += rng.randbytes(rng.randint(1, 64))
    elif kind == 6:  # huge SLEEP/WORK argument
        frame[4] = rng.choice([Op.SLEEP, Op.WORK])
        frame[5:9] = rng.randrange(1 << 24, 1 << 32).to_bytes(4, "big")
    else:  # random bytes
        frame = bytearray(rng.randbytes(rng.randint(1, 64)))
    return bytes(frame)


def bad_client(port: int, data: bytes) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=GOOD_TIMEOUT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def good_client(port: int, rng: random.Random) -> int:
    """Ten requests, each checked; returns how many failed."""
    failed = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=GOOD_TIMEOUT) as s:
            for _ in range(10):
                payload = rng.randbytes(rng.randint(0, 64))
                s.sendall(encode_request(Op.ECHO, 0, payload))
                if read_response(s.recv) != (Status.OK, payload):
                    failed += 1
    except OSError:
        failed += 10
    return failed


def slow_client(port: int, trickle: bool) -> None:
    """A trickler (one byte every 0.2 s) or an unreading pipeliner of 1 MiB replies."""
    frame = encode_request(Op.ECHO, 0, b"x" * 64)
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=GOOD_TIMEOUT) as s:
        if trickle:
            for i in range(len(frame)):
                s.send(frame[i : i + 1])
                time.sleep(0.2)
        else:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.send(encode_request(Op.ECHO, reply_len=1 << 20) * 200)
            time.sleep(READ_TIMEOUT + 1)


def soak(design: str, frames: int, idle: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    one_at_a_time = design_class(design).serves_one_at_a_time
    extra = ["--read-timeout", str(READ_TIMEOUT), "--max-connections", "8192"]
    server = ServerProcess.start(design, backlog=128, extra_args=extra)
    proc = psutil.Process(server.pid)
    fds0, rss0 = proc.num_fds(), proc.memory_info().rss
    good_failed = good_sent = 0
    started = time.monotonic()
    workers = 1 if one_at_a_time else 8
    with ThreadPoolExecutor(workers) as pool:
        for batch in range(0, frames, 200):
            # Each batch: a trickler and an unreading client alongside 200 mutated frames.
            slow = [threading.Thread(target=slow_client, args=(server.port, trickle)) for trickle in (True, False)]
            for t in slow:
                t.start()
            cases = [mutate(rng) for _ in range(min(200, frames - batch))]
            list(pool.map(lambda data: bad_client(server.port, data), cases))
            good_failed += good_client(server.port, rng)
            good_sent += 10
            for t in slow:
                t.join()
            if not server.alive():
                break
    fuzz_s = time.monotonic() - started
    # Idle connections: held, then a good client must still be served, then all closed.
    held = []
    want = 128 + 1 if one_at_a_time else idle
    for _ in range(want):
        try:
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        except OSError:
            break
    time.sleep(1.0)
    peak_fds = proc.num_fds()
    # A fixed pool serves --workers connections at a time, so idle connections occupy it as they occupy
    # a one-at-a-time server: a good client then waits behind them by design, which is no regression.
    if not (one_at_a_time or design_class(design).pooled):
        good_failed += good_client(server.port, rng)
        good_sent += 10
    for s in held:
        s.close()
    time.sleep(READ_TIMEOUT + 1.5)  # what the server still holds is released by its own bounds
    good_failed += good_client(server.port, rng)
    good_sent += 10
    crashed = not server.alive()
    fds1, rss1 = (proc.num_fds(), proc.memory_info().rss) if not crashed else (-1, -1)
    t = time.monotonic()
    stopped = server.stop(timeout=10)
    stop_s = time.monotonic() - t
    return {
        "design": design,
        "fuzzed_frames": frames,
        "fuzz_s": round(fuzz_s, 1),
        "crashed": crashed,
        "good_requests": good_sent,
        "good_failed": good_failed,
        "idle_held": len(held),
        "peak_fds": peak_fds,
        "fds_before": fds0,
        "fds_after": fds1,
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_mib": round(rss1 / 2**20, 1),
        "stop_s": round(stop_s, 2),
        "stopped_line": stopped is not None,
        "rejected": (stopped or {}).get("rejected"),
    }


def regressions(r: dict[str, object]) -> list[str]:
    out = []
    if r["crashed"]:
        out.append("crashed")
    if r["good_failed"]:
        out.append(f"{r['good_failed']} good requests failed")
    if int(r["fds_after"]) > int(r["fds_before"]) + 2:  # type: ignore[arg-type]
        out.append(f"fds {r['fds_before']} → {r['fds_after']}")
    if (float(r["rss_after_mib"]) - float(r["rss_before_mib"])) * 2**20 > MAX_RSS_GROWTH:  # type: ignore[arg-type]
        out.append(f"RSS {r['rss_before_mib']} → {r['rss_after_mib']} MiB")
    if float(r["stop_s"]) > MAX_STOP_S or not r["stopped_line"]:  # type: ignore[arg-type]
        out.append(f"stop took {r['stop_s']} s" + ("" if r["stopped_line"] else ", no stopped line"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", default=",".join(speaking("socklab")))
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--idle", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 2000)), hard))
    bad = False
    for design in args.designs.split(","):
        r = soak(design, args.frames, args.idle, args.seed)
        problems = regressions(r)
        bad |= bool(problems)
        verdict = "REGRESSION: " + "; ".join(problems) if problems else "ok"
        print(
            f"{design:10} frames {r['fuzzed_frames']:,} in {r['fuzz_s']} s · crashed {r['crashed']} · good "
            f"{r['good_requests'] - r['good_failed']}/{r['good_requests']} · idle held {r['idle_held']:,} "
            f"(peak fds {r['peak_fds']:,}) · fds {r['fds_before']} → {r['fds_after']} · RSS {r['rss_before_mib']} → "
            f"{r['rss_after_mib']} MiB · stop {r['stop_s']} s · {verdict}",
            flush=True,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
