"""Any server, any protocol: real nginx, Redis, the standard library's HTTP server and socklab's own designs,
read through loadtest.client.protocols, loaded through Locust, and watched by the monitor and the kernel."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from loadtest.client.failures import RequestFailure
from loadtest.client.protocols import Http, Protocol, Raw, Resp, Socklab
from servers.external import program
from servers.protocol import Op, encode_request
from tests.helpers import locust_command, run_locust

EXTERNAL = [sys.executable, "-m", "servers.external"]
SEED_C = Path(__file__).parent.parent / "servers" / "c" / "build" / "seed-c"


def installed(name: str) -> bool:
    try:
        program(name)
    except SystemExit:
        return False
    return True


needs_nginx = pytest.mark.skipif(not installed("nginx"), reason="nginx is not installed (bash .ci/setup --test)")
needs_redis = pytest.mark.skipif(not installed("redis-server"), reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, "the server exited at once"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listened on {port} within {timeout} s")


@contextmanager
def started(*command: str) -> Iterator[tuple[int, int]]:
    """A server socklab does not start, on a free port: (port, pid); stopped and waited for at the end."""
    port = free_port()
    proc = subprocess.Popen([c.replace("{port}", str(port)) for c in command], stdout=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def one_reply(port: int, request: bytes, *, until_close: bool = False) -> bytes:
    """The bytes a real server answers one request with (a second's silence, or its close, ends them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(None if until_close else 0.3)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    assert data, "no reply"
    return data


def ends_exactly(protocol: Protocol, reply: bytes) -> None:
    """Split anywhere, a reply is incomplete until its last byte, and ends there; two in a row are two."""
    for cut in range(len(reply)):
        assert protocol.reply_end(reply[:cut]) is None, cut
    end, _ = protocol.reply_end(reply)  # type: ignore[misc]
    assert end == len(reply)
    assert protocol.reply_end(reply + reply, end)[0] == 2 * len(reply)  # type: ignore[index]


class Chunked(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"sock", b"lab", b"!" * 300):
            self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")

    def log_message(self, *args: object) -> None:
        return None


@needs_nginx
@needs_redis
def test_each_protocol_finds_the_end_of_a_real_servers_reply_wherever_it_is_split() -> None:
    http = Http("/", "localhost")
    with started(*EXTERNAL, "nginx", "--port", "{port}") as (port, _):
        ends_exactly(http, one_reply(port, http.request()))  # Content-Length, kept alive
        missing = one_reply(port, Http("/nothing/../../x").request())
        assert missing.startswith(b"HTTP/1.1 400")
        with pytest.raises(RequestFailure, match="bad status: HTTP 400"):
            http.reply_end(missing)
    with started(*EXTERNAL, "redis", "--port", "{port}") as (port, _):
        for command in ("PING", "SET k v", "GET k", "GET nothing", "MGET k nothing k", "HELLO 3"):
            ends_exactly(Resp(command), one_reply(port, Resp(command).request()))
        error = one_reply(port, Resp("GET").request())
        with pytest.raises(RequestFailure, match="bad status: ERR wrong number of arguments"):
            Resp("GET").reply_end(error)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Chunked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chunked = one_reply(server.server_address[1], http.request())
        ends_exactly(http, chunked)
        # A chunked body cut short by the server's close is incomplete, however the header is spelled.
        for spelled in (chunked, chunked.replace(b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked")):
            with pytest.raises(RequestFailure, match="closed"):
                http.at_close(spelled[:-10])
    finally:
        server.shutdown()
        server.server_close()
    with started(sys.executable, "-m", "servers", "selectors", "--port", "{port}") as (port, _):
        frame = encode_request(Op.ECHO, 0, b"hello")
        reply = one_reply(port, frame)
        ends_exactly(Socklab(frame), reply)
        ends_exactly(Raw(frame, expect_bytes=len(reply)), reply)
        with pytest.raises(RequestFailure, match="protocol error"):
            http.reply_end(reply)  # not HTTP at all: a malformed reply, said as one failure class


def summary_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "summary.csv").open() as f:
        return next(csv.DictReader(f))


def test_http_against_a_stdlib_server_socklab_did_not_start_is_monitored_by_its_port(tmp_path: Path) -> None:
    """python -m http.server, started here: --server none --host names it, --server-pid its process.  Every GET
    succeeds (it answers HTTP/1.0 and closes: each request a connection of its own, no failure), and the
    monitor watches its port — established connections, the accept queue — and its process."""
    (tmp_path / "index.html").write_text("socklab\n")
    with started(sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "-d", str(tmp_path)) as (
        port,
        pid,
    ):
        target = ("--server", "none", "--host", f"tcp://127.0.0.1:{port}", "--server-pid", str(pid))
        # Samples every 0.1 s: its connections live a few ms each, and two samples at 0.5 s once saw none open.
        args = (*target, "--protocol", "http", "--monitor-interval", "0.1")
        run = run_locust(tmp_path, *args, users=4, seconds=1, page=True)
    assert run.returncode == 0, run.stderr[-2000:]
    row = summary_row(run.report_dir)
    assert int(row["requests"]) > 30 and int(row["failures"]) == 0, row
    assert int(row["users_served"]) == 4
    assert int(row["peak_established"]) >= 1 and row["peak_accept_queue"] != "", row
    assert float(row["server_cpu_us_per_request"]) > 0 and int(row["peak_threads"]) >= 1  # --server-pid's process
    monitor = pd.read_csv(run.report_dir / "monitor.csv")
    assert len(monitor) >= 3 and (monitor["listeners"] == 1).all()
    assert (monitor["server_TIME_WAIT"] > 0).any()  # HTTP/1.0: the server closes first and holds TIME_WAIT
    info = run.manifest()
    assert info["design"] == "external" and info["kernel_trace"]["status"] == "measured"
    stats = run.locust_stats()
    assert int(stats[("GET", "persistent")]["Request Count"]) == int(row["requests"])


@needs_nginx
def test_nginx_serves_http_with_no_failure_and_the_kernel_names_the_worker_of_each_connection(tmp_path: Path) -> None:
    """Real nginx, 2 workers, started by --server-cmd through servers.external: connect-per-request GETs
    (Connection: close), and persistent ones that nginx closes after 50 requests (its Connection: close is
    followed, not failed).  The kernel's accept() names the worker of each connection: nginx's workers,
    never its master or the launcher."""
    command = f"nginx={sys.executable} -m servers.external nginx --port {{port}} --workers 2 --keepalive-requests 50"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    closing = run_locust(
        tmp_path / "a", "ConnectPerRequestUser", "--server-cmd", command, "--protocol", "http", seconds=1, page=True
    )
    assert closing.returncode == 0, closing.stderr[-2000:]
    kept = run_locust(tmp_path / "b", "--server-cmd", command, "--protocol", "http", users=4, seconds=1, page=True)
    assert kept.returncode == 0, kept.stderr[-2000:]
    row = summary_row(kept.report_dir)
    assert int(row["failures"]) == 0 and int(row["requests"]) > 1000, row
    # The monitor watched its port. At a sample a user may be between two connections (one each 50 requests),
    # or its next may be up before nginx's close() of the last: 1 to 2 a user.
    assert 1 <= int(row["peak_established"]) <= 8 and row["peak_accept_queue"] != "", row
    # Every connection nginx ended carried exactly 50 requests and ended well, nearly always its FIN first (the
    # kernel's; the client, told "Connection: close", may close before nginx's close() does); the only others are
    # the 4 still open as the run stopped.
    conns = pd.read_csv(kept.report_dir / "connections.csv", low_memory=False)
    ended = conns[conns["outcome"] == "ok"]
    assert len(ended) > 100 and (ended["requests"] == 50).all()
    assert (ended["kernel_first_fin"] == "server").mean() > 0.9, ended["kernel_first_fin"].value_counts()
    assert (conns["outcome"] == "unfinished").sum() == 4 and len(conns) == len(ended) + 4
    for run in (closing, kept):
        stats = run.locust_stats()
        name = "connect-per-request" if run is closing else "persistent"
        assert int(stats[("GET", name)]["Request Count"]) > 100 and int(stats[("GET", name)]["Failure Count"]) == 0
        by = pd.read_csv(run.report_dir / "kernel_connections.csv")["kernel_accepted_by"].dropna()
        launcher = run.manifest()["server"]["pid"]
        assert launcher not in set(by) and 1 <= by.nunique() <= 2, by.value_counts()


@needs_redis
def test_redis_answers_resp_commands_with_no_failure(tmp_path: Path) -> None:
    with started(*EXTERNAL, "redis", "--port", "{port}") as (port, pid):
        host = ("--server", "none", "--host", f"tcp://127.0.0.1:{port}", "--server-pid", str(pid))
        run = run_locust(
            tmp_path, *host, "--protocol", "resp", "--resp-command", "SET key value", "--pipeline", "4", seconds=1
        )
    assert run.returncode == 0, run.stderr[-2000:]
    stats = run.locust_stats()[("RESP", "persistent")]
    assert int(stats["Request Count"]) > 1000 and int(stats["Failure Count"]) == 0


def test_a_reply_in_another_protocol_is_a_protocol_error_not_a_crash(tmp_path: Path) -> None:
    """--protocol http against socklab's own server: its replies are not HTTP; each GET fails as a protocol
    error, one class in Locust's failure table, and the run ends normally."""
    run = run_locust(tmp_path, "--server", "selectors", "--protocol", "http", users=2, seconds=1)
    assert run.returncode == 1, run.stderr[-2000:]  # Locust's exit status when requests failed
    with (run.report_dir / "locust_failures.csv").open() as f:
        failures = list(csv.DictReader(f))
    assert failures and all(r["Error"].startswith("protocol error") for r in failures), failures


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--protocol", "http", "--op", "SLEEP"), "--op SLEEP is an op of socklab's frames"),
        (("--protocol", "resp", "--mix", "ECHO:1"), "--mix mixes socklab's ops"),
        (("--protocol", "raw"), "a reply ends only when the server closes"),
        (("--protocol", "raw", "ConnectPerRequestUser", "--pipeline", "2"), "--pipeline with replies ended"),
        (("--protocol", "http", "OneShotUser"), "the one-shot user sends --message"),
        (
            (
                "--protocol",
                "gopher",
            ),
            "invalid choice: 'gopher'",
        ),
        (("--server-pid", "4194303", "--server", "none", "--host", "tcp://127.0.0.1:9"), "no such process"),
        (("--server-pid", "1"), "--server-pid names a server socklab did not start"),
    ],
)
def test_what_a_protocol_cannot_express_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    done = subprocess.run(locust_command(1, 1, *args), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-1000:]
    last = done.stderr.strip().splitlines()[-1]
    assert words in last, last


def test_the_seed_design_and_its_c_twin_accept_alike(tmp_path: Path) -> None:
    """The lesson's program, in Python (the seed design) and in C (servers/c/seed.c), under the same load: 50
    one-shot clients against listen(10), one connection each, arriving at once (the `seed` scenario).  Both
    fill the accept queue to 11 (the kernel's own account, to one accept() in progress), drop the rest of
    the burst, and serve every client, those dropped after their SYN's first re-send (~1 s) — with no
    failure, each connection's one message read, the server's close first.  Only the cost differs."""
    if not SEED_C.exists():
        pytest.skip("servers/c/build/seed-c is not built (bash .ci/setup)")
    load = ("OneShotUser", "--backlog", "10", "--connections-total", "50")
    (tmp_path / "py").mkdir()
    (tmp_path / "c").mkdir()
    runs = {
        "seed": run_locust(tmp_path / "py", *load, "--server", "seed", users=50, seconds=30, page=True),
        "seed-c": run_locust(
            tmp_path / "c", *load, "--server-cmd", f"seed-c={SEED_C} {{port}} 10", users=50, seconds=30, page=True
        ),
    }
    for name, run in runs.items():
        assert run.returncode == 0, run.stderr[-2000:]
        row = summary_row(run.report_dir)
        assert (row["requests"], row["failures"], row["users_served"]) == ("50", "0", "50"), (name, row)
        assert int(row["listen_overflows"]) > 0, row
        kernel = pd.read_csv(run.report_dir / "kernel_connections.csv")
        # 11 = backlog + 1; 12 when an arrival lands between an accept()'s dequeue and its return, where the
        # tracer stamps it (sys_exit_accept)
        assert len(kernel) == 50 and peak_accept_queue(kernel) in (11, 12), name
        assert (kernel["kernel_first_fin"] == "server").all()  # the server's close() ends each one
        conns = pd.read_csv(run.report_dir / "connections.csv", low_memory=False)
        retried = conns[conns["syn_retrans"] > 0]
        assert len(retried) >= 10, name  # at least the burst beyond the queue waited on the SYN schedule
        assert ((retried["syn_retry_wait"] > 900) & (retried["syn_retry_wait"] < 3500)).all()
        assert int(run.locust_stats()[("MESSAGE", "one-shot")]["Request Count"]) == 50
    stopped = runs["seed"].manifest()
    assert stopped["server"]["backlog"] == 10 and stopped["server"]["design"]["loop"] == "one-shot"
    assert stopped["server_stopped"]["requests"] == 50  # one message read a connection


def peak_accept_queue(kernel: pd.DataFrame) -> int:
    """The deepest the accept queue was, from the kernel's own stamps: into it at the child's ESTABLISHED, out
    at accept()."""
    ins = kernel["kernel_server_established"].dropna()
    outs = kernel["kernel_accepted"].dropna()
    events = pd.concat([pd.Series(1, index=ins.to_numpy()), pd.Series(-1, index=outs.to_numpy())])
    events = events.groupby(level=0).sum().sort_index()  # an accept and an arrival at one instant: net
    return int(events.cumsum().max())


def test_the_seed_survives_any_bytes_and_says_what_it_read_when_stopped() -> None:
    """The seed reads one message of up to 4,096 bytes and closes: nothing, garbage, a socklab frame, or more
    than one read takes (its close then resets the client), one after another — it serves each and is still
    there; SIGTERM ends it with its stopped line: every connection, a message from each that sent one."""
    from loadtest.matrix.processes import ServerProcess

    server = ServerProcess.start("seed")
    try:
        assert server.backlog == 10  # its own default: listen(10)
        messages = [b"", b"\xff\x00garbage", encode_request(Op.ECHO, 0, b"x"), b"y" * 10_000]
        for message in messages:
            with socket.create_connection(server.address, timeout=5) as sock:
                sock.sendall(message)
                if not message:
                    sock.shutdown(socket.SHUT_WR)
                try:
                    assert sock.recv(100) == b""  # no reply: its close
                except ConnectionResetError:
                    assert len(message) > 4096  # unread bytes at its close(): a reset
    finally:
        stopped = server.stop()
    assert stopped is not None and stopped["connections"] == 4 and stopped["requests"] == 3, stopped
