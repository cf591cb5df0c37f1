"""The load-generator reference: a bare gevent loop over loadtest.client, no Locust.

    python -m benchmarks.bare_client --port P [--users 50] [--seconds 8] [--payload-bytes 64]

The same SocklabClient code the Locust users run, each greenlet sending ECHO
back to back; the callback only counts.  Prints one JSON line with requests,
wall time and this process's CPU over the measured window.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

from loadtest.client import SocklabClient  # noqa: E402
from servers.protocol import Op, encode_request  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--payload-bytes", type=int, default=64)
    args = ap.parse_args()
    frame = encode_request(Op.ECHO, 0, b"x" * args.payload_bytes)
    counted = [0]

    def count(*_: object) -> None:
        counted[0] += 1

    def user() -> None:
        client = SocklabClient(args.host, args.port, on_request=count)
        client.connect()
        while True:
            client.request(Op.ECHO, name="persistent", frame=frame)

    me = psutil.Process()
    cpu0, t0 = me.cpu_times(), time.perf_counter()
    greenlets = [gevent.spawn(user) for _ in range(args.users)]
    gevent.sleep(args.seconds)
    wall, cpu1 = time.perf_counter() - t0, me.cpu_times()
    n = counted[0] - args.users  # the CONNECT events are not requests
    gevent.killall(greenlets)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(
        json.dumps(
            {
                "requests": n,
                "wall_s": wall,
                "cpu_s": cpu,
                "rps": n / wall,
                "cpu_us_per_request": cpu / n * 1e6,
                "cpu_percent": 100 * cpu / wall,
            }
        )
    )


if __name__ == "__main__":
    main()
