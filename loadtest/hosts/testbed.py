"""Several hosts on one machine: network namespaces joined by real interfaces.

    python -m loadtest.hosts.testbed [--workers 2] [--link-delay-ms D] [--link-loss-percent P] -- LOCUST_OPTIONS...

socklab's distributed mode puts the server (with its monitor and Locust's master)
on one host and the load generators on others.  This script builds that on one
machine, so it can be tried and tested without other machines:

- network namespaces ``PREFIX-srv`` and ``PREFIX-w1`` … ``PREFIX-wN`` (the hosts)
  and ``PREFIX-sw`` (the switch), each host with one interface ``eth0`` and an
  address in 198.51.100.0/24 — TEST-NET-2, reserved for documentation, which
  routes nowhere; the addresses exist only inside these namespaces;
- in ``srv``: ``locust --master --headless`` with ``--server-bind 198.51.100.1``,
  so the master starts the server on the address the workers reach, and the
  monitor beside it (in srv's namespace, whose kernel counters count this run
  only); in each ``wN``: ``locust --worker --master-host 198.51.100.1``;
- links: a Linux bridge in the switch namespace and a veth pair per host.  With
  ``--link-delay-ms D`` each host's link holds its outgoing frames D ms (a round
  trip of 2·D): ``tc netem`` on the host's interface where the kernel has it;
  where it does not (this project's CI kernel has no sch_netem), each host gets
  a TAP interface instead, and a wire process in the switch namespace forwards
  Ethernet frames between the TAPs after D ms — netem's delay in user space, with
  the kernels' TCP on both sides doing the real handshake, retransmits and all.

Everything is torn down when the master exits, on failure, on Ctrl-C, SIGTERM
and SIGHUP: the processes in the namespaces, the wire, the links (they go with
their namespaces), the namespaces.  The options after ``--`` go to the master
(``-u``, ``-t``, ``--server``, ``--report-dir`` …); ``-t`` is required, so the
run ends by itself.  Needs root and iproute2's ``ip`` (``tc`` for netem).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.declare.settings import LOCUSTFILE
from loadtest.hosts.iproute import TestbedError, can_build, ip, netem_available, remove_stale_beds
from loadtest.hosts.isolate import ENV_MARK
from servers.cli import OneLineParser

NETWORK = ipaddress.ip_network("198.51.100.0/24")  # TEST-NET-2 (RFC 5737): documentation only
SERVER_ADDRESS = "198.51.100.1"
MASTER_PORT = 5557
ROOT = LOCUSTFILE.parents[1]  # the repository: the beds' processes run from it


@dataclass
class Host:
    name: str  # srv, w1, w2 …
    namespace: str
    address: str


@dataclass
class Testbed:
    """The namespaces, links and processes of one test bed; :meth:`teardown` removes all of them."""

    prefix: str
    workers: int
    delay_ms: float = 0.0
    loss_percent: float = 0.0
    hosts: list[Host] = field(default_factory=list)
    switch: str = ""
    links: str = "bridge"  # bridge | netem | wire
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    wire: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.switch = f"{self.prefix}-sw"
        names = ["srv", *(f"w{i}" for i in range(1, self.workers + 1))]
        addresses = [SERVER_ADDRESS, *(str(NETWORK.network_address + 10 + i) for i in range(1, self.workers + 1))]
        self.hosts = [Host(n, f"{self.prefix}-{n}", a) for n, a in zip(names, addresses, strict=True)]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(h.namespace for h in self.hosts)]

    # -- build -------------------------------------------------------------------------------
    def build(self) -> None:
        for ns in self.namespaces:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        want_delay = self.delay_ms > 0 or self.loss_percent > 0
        if want_delay and not netem_available(self.hosts[0].namespace, "lo"):
            self._wire_links()
        else:
            self._bridge()
            if want_delay:
                self.links = "netem"
                for host in self.hosts:
                    self._netem(host)
        for host in self.hosts:
            ip("-n", host.namespace, "addr", "add", f"{host.address}/{NETWORK.prefixlen}", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")

    def _bridge(self) -> None:
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            port = f"p-{host.name}"
            ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
            ip("-n", self.switch, "link", "set", port, "master", "br0")
            ip("-n", self.switch, "link", "set", port, "up")

    def _netem(self, host: Host) -> None:
        spec = ["delay", f"{self.delay_ms:g}ms"]
        if self.loss_percent > 0:
            spec += ["loss", f"{self.loss_percent:g}%"]
        subprocess.run(
            ["ip", "netns", "exec", host.namespace, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", *spec],
            check=True,
            capture_output=True,
        )

    def _wire_links(self) -> None:
        """No netem here: each host gets a TAP whose frames the wire process forwards after the delay."""
        taps = [f"t-{host.name}" for host in self.hosts]
        cmd = [
            "ip",
            "netns",
            "exec",
            self.switch,
            sys.executable,
            "-m",
            "loadtest.hosts.wire",
            "--delay-ms",
            f"{self.delay_ms:g}",
            "--loss-percent",
            f"{self.loss_percent:g}",
            *taps,
        ]
        self.wire = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True
        )
        assert self.wire.stdout is not None
        ready, _, _ = select.select([self.wire.stdout], [], [], 15)
        if not ready or self.wire.stdout.readline().strip() != b"ready":
            raise TestbedError("the wire process did not start (see its error above)")
        for host, tap in zip(self.hosts, taps, strict=True):
            ip("-n", self.switch, "link", "set", tap, "netns", host.namespace)
            ip("-n", host.namespace, "link", "set", tap, "name", "eth0")
        self.links = "wire"

    # -- run ---------------------------------------------------------------------------------
    def start(self, host: Host, cmd: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Run `cmd` on `host`.  Its namespace was made for this run alone, and the mark says so, so
        a monitor there labels its kernel counters `isolated` (netns.in_private_netns)."""
        env = dict(os.environ, **{ENV_MARK: f"net:[{os.stat(f'/run/netns/{host.namespace}').st_ino}]"})
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, *cmd],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            **kwargs,
        )  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def describe(self) -> str:
        link = {
            "bridge": "a bridge",
            "netem": f"tc netem {self.delay_ms:g} ms",
            "wire": f"socklab's wire {self.delay_ms:g} ms (no sch_netem here)",
        }[self.links]
        if self.loss_percent > 0 and self.links != "bridge":
            link += f", {self.loss_percent:g} % loss"
        hosts = " · ".join(f"{h.namespace} {h.address}" for h in self.hosts)
        return f"testbed: {hosts}; links through {link} each way"

    # -- teardown ----------------------------------------------------------------------------
    def teardown(self) -> None:
        """Every process, the wire, every namespace (their links go with them). Safe to call twice."""
        for proc in self.procs:
            _stop_group(proc, signal.SIGTERM, 5.0)
        for ns in self.namespaces:  # anything else still running in there (a server a master left)
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        if self.wire is not None:
            _stop_group(self.wire, signal.SIGTERM, 3.0)
        for ns in self.namespaces:
            ip("netns", "del", ns, check=False)
        self.procs.clear()

    def leftovers(self) -> list[str]:
        """Namespaces of this bed that still exist (for tests and the closing line)."""
        listed = ip("netns", "list", check=False).stdout.split()
        return [ns for ns in self.namespaces if ns in listed]


def _stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# -- the command -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m loadtest.hosts.testbed",
        description="Run a socklab master (server + monitor) and workers on hosts made of network "
        "namespaces joined by real interfaces.",
    )
    p.add_argument("--workers", type=int, default=2, help="worker hosts w1..wN, one Locust worker each (default 2)")
    p.add_argument(
        "--link-delay-ms",
        type=float,
        default=0.0,
        help="each host's link holds its outgoing frames this long (round trip 2×); default 0",
    )
    p.add_argument("--link-loss-percent", type=float, default=0.0, help="frames lost on each link, %% (default 0)")
    p.add_argument("--prefix", default=f"sl{os.getpid()}", help="namespace name prefix (default sl<pid>)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds after which the bed is torn down anyway")
    p.add_argument("locust_args", nargs=argparse.REMAINDER, help="-- then the master's Locust options (-t required)")
    return p


def master_command(args: list[str], workers: int) -> list[str]:
    locust = str(Path(sys.executable).with_name("locust"))
    base = [
        locust,
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--master",
        "--master-bind-host",
        SERVER_ADDRESS,
        "--master-bind-port",
        str(MASTER_PORT),
        "--expect-workers",
        str(workers),
        "--server-bind",
        SERVER_ADDRESS,
    ]
    return [*base, *args]  # the user's options last: they win


def worker_command() -> list[str]:
    locust = str(Path(sys.executable).with_name("locust"))
    return [
        locust,
        "-f",
        str(LOCUSTFILE),
        "--worker",
        "--master-host",
        SERVER_ADDRESS,
        "--master-port",
        str(MASTER_PORT),
    ]


@contextlib.contextmanager
def terminated_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the bed like Ctrl-C: through the clean-up below."""

    def leave(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    locust_args = args.locust_args[1:] if args.locust_args[:1] == ["--"] else args.locust_args
    if not 1 <= args.workers <= 50:
        parser.error(f"--workers {args.workers}: give 1 to 50 worker hosts")
    if args.link_delay_ms < 0 or not 0 <= args.link_loss_percent < 100:
        parser.error("--link-delay-ms must be >= 0 and --link-loss-percent in [0, 100)")
    if not any(a in ("-t", "--run-time") or a.startswith("--run-time=") for a in locust_args):
        parser.error("give the master a run time after --, e.g. -- -u 10 -t 10s: a test bed run must end by itself")
    ok, why = can_build()
    if not ok:
        parser.error(f"cannot build network namespaces here: {why}")
    for line in remove_stale_beds():
        print(line, flush=True)
    bed = Testbed(args.prefix, args.workers, args.link_delay_ms, args.link_loss_percent)
    status = 1
    with terminated_by_signals():
        try:
            bed.build()
            print(bed.describe(), flush=True)
            master = bed.start(bed.hosts[0], master_command(locust_args, args.workers), cwd=os.getcwd())
            time.sleep(0.3)  # the master binds its port before the workers dial it (they retry anyway)
            workers = [bed.start(host, worker_command(), cwd=os.getcwd()) for host in bed.hosts[1:]]
            try:
                status = master.wait(args.timeout)
            except subprocess.TimeoutExpired:
                print(f"testbed: the master ran past --timeout {args.timeout:g} s; stopping it", file=sys.stderr)
                _stop_group(master, signal.SIGINT, 30.0)
                status = 1
            for worker in workers:  # the master's quit message ends them; give them a moment
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(10)
        except KeyboardInterrupt:
            for proc in bed.procs[:1]:  # the master first: SIGINT lets it write its report
                _stop_group(proc, signal.SIGINT, 30.0)
            status = 130
        except TestbedError as exc:
            print(f"testbed: {exc}", file=sys.stderr)
            status = 2
        finally:
            bed.teardown()
    left = bed.leftovers()
    print(
        f"testbed: master exited {status}; "
        + (f"left behind: {', '.join(left)}" if left else "namespaces, links and processes removed"),
        flush=True,
    )
    return status if not left else 1


if __name__ == "__main__":
    sys.exit(main())
