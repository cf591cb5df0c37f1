"""socklab live in Locust's web UI, driven by a real headless Chromium (Playwright on Debian's chromium).

One Locust with its web UI on an ephemeral port, an embedded `blocking` server (one client
at a time, so the accept queue and ESTABLISHED move as soon as users arrive), and the page
used as a person would: Start with the Host field empty, the socklab tab, the live charts,
a bad Host, Stop and a new test.  The server options and the headless live line are checked
over plain HTTP and a headless run.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadtest.matrix.processes import free_port
from tests.browser import FLAGS, chromium

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = str(ROOT / "loadtest" / "locustfile.py")
LOCUST = str(Path(sys.executable).with_name("locust"))

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by bash .ci/setup --test")


class WebLocust:
    """`locust -f loadtest/locustfile.py` with its web UI on a free loopback port."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = tmp / "run"
        self.log = (tmp / "locust.log").open("w+")
        self.proc = subprocess.Popen(
            [
                LOCUST,
                "-f",
                LOCUSTFILE,
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(self.port),
                "--report-dir",
                str(self.folder),
                "--monitor-interval",
                "0.25",
                *args,
            ],
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/stats/requests")
                break
            except OSError:
                assert self.proc.poll() is None, self.output()
                assert time.monotonic() < deadline, "the web UI did not come up"
                time.sleep(0.2)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, form: dict[str, Any]) -> Any:
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(self.url + path, data=data, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def figure(self, name: str) -> str | None:
        """The tab's figure now; None while it is not shown (a restarted server's monitor has no sample yet)."""
        rows = self.get("/stats/requests")["extended_stats"][0]["data"]
        return next((r["value"] for r in rows if r["figure"] == name), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebLocust]:
    locust = WebLocust(tmp_path, "--server", "blocking")
    try:
        yield locust
    finally:
        locust.stop()


def wait_for(check: Any, timeout: float = 15.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def servers_of(proc: subprocess.Popen[Any]) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if "servers" in " ".join(p.cmdline())]


@pytest.fixture
def browser() -> Iterator[Any]:
    exe = chromium()
    assert exe, "chromium is not installed (bash .ci/setup --test installs it)"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=[f for f in FLAGS if f != "--headless"], headless=True)
        try:
            yield b
        finally:
            b.close()


def start_from_form(page: Any, users: int) -> None:
    page.fill("input[name=userCount]", str(users))
    page.fill("input[name=spawnRate]", str(users))
    page.click("button[type=submit]")


def tab_value(page: Any, figure: str) -> str:
    row = page.locator("tr", has=page.locator("td", has_text=re.compile(f"^{re.escape(figure)}$")))
    return row.locator("td").nth(1).inner_text()


def test_the_socklab_tab_live_charts_bad_host_and_a_second_test(web: WebLocust, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(web.url + "/")

    # A bad Host: the command line's one-line message on the page, nobody spawned.
    page.fill("input[name=host]", "http://example")
    start_from_form(page, 5)
    page.get_by_text("use tcp://HOST:PORT").wait_for(timeout=10_000)
    stats = web.get("/stats/requests")
    assert stats["state"] == "ready" and stats["user_count"] == 0

    # The Host field empty: the server socklab started.
    page.reload()
    assert page.input_value("input[name=host]") == ""
    start_from_form(page, 5)
    page.get_by_role("tab", name="socklab").click()
    page.locator("td", has_text="accept queue / backlog").wait_for(timeout=15_000)
    # One client at a time: the other four wait in the accept queue, all five are ESTABLISHED.
    assert wait_for(lambda: tab_value(page, "accept queue / backlog") == "4 / 128"), tab_value(
        page, "accept queue / backlog"
    )
    assert tab_value(page, "server ESTABLISHED") == "5"
    assert wait_for(lambda: tab_value(page, "users served / starved") == "1 / 4 of 5")
    assert "µs" in tab_value(page, "µs p50 / p99 ECHO persistent")
    page.screenshot(path=str(web.folder / "webui_tab.png"), full_page=True)

    # The live chart page draws every chart from the same data.
    charts = browser.new_page(viewport={"width": 1400, "height": 1400})
    charts.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    charts.on("pageerror", lambda e: errors.append(str(e)))
    charts.goto(web.url + "/socklab")
    charts.wait_for_function("document.querySelectorAll('.main-svg').length >= 6", timeout=15_000)
    assert wait_for(lambda: "4 / 128" in charts.inner_text("#figures"))
    charts.screenshot(path=str(web.folder / "webui_charts.png"), full_page=True)
    charts.close()
    page.bring_to_front()  # a page in the background has its polling timers throttled

    # Stop, then a new test with --op SLEEP: the new test counts from zero.
    page.get_by_role("button", name="Stop").click()
    assert wait_for(lambda: web.get("/stats/requests")["state"] == "stopped")
    try:
        page.get_by_role("button", name="New").click(timeout=10_000)
    except sync_api.TimeoutError:  # Locust's page polls its state every 2 s; a reload reads it at once
        page.reload()
        page.get_by_role("button", name="New").click(timeout=10_000)
    page.get_by_text("Custom parameters").click()
    page.select_option("select[name=op]", "SLEEP")
    page.fill("input[name=sleepMs]", "20")
    start_from_form(page, 2)
    page.get_by_role("tab", name="socklab").click()
    assert wait_for(lambda: "SLEEP persistent" in page.inner_text("table"), timeout=15)
    assert "ECHO persistent" not in page.inner_text("table")
    assert wait_for(lambda: web.figure("users served / starved") == "1 / 1 of 2")
    assert not errors, errors


def test_server_options_between_tests_restart_it_and_are_refused_while_running(web: WebLocust) -> None:
    first = servers_of(web.proc)
    assert len(first) == 1
    form = {"user_count": 2, "spawn_rate": 2, "host": "", "backlog": 7, "server": "threaded"}
    answer = web.post("/swarm", form)
    assert answer["success"], answer
    assert wait_for(lambda: web.figure("accept queue / backlog") == "0 / 7"), web.figure("accept queue / backlog")
    now = servers_of(web.proc)
    assert len(now) == 1 and now[0].pid != first[0].pid and "threaded" in now[0].cmdline()
    assert json.loads((web.folder / "run.json").read_text())["server"]["backlog"] == 7
    # While the test runs: a change is refused with a message, and the server stays.
    refused = web.post("/swarm", {"user_count": 2, "spawn_rate": 2, "backlog": 9})
    assert not refused["success"] and "--backlog" in refused["message"] and "Stop" in refused["message"]
    assert servers_of(web.proc)[0].pid == now[0].pid
    # A bad value is the same one line as on the command line.
    web.post("/stop", {})
    bad = web.post("/swarm", {"user_count": 1, "spawn_rate": 1, "host": "", "payload_bytes": -1})
    assert not bad["success"] and bad["message"] == "--payload-bytes must be >= 0"
    assert web.get("/stats/requests")["user_count"] == 0


def test_a_second_counted_test_completes_its_connections_too(tmp_path: Path) -> None:
    # The count of --connections-total once lived on the user class and was never reset: the
    # second test in the same web UI ran forever with 0 requests.
    web = WebLocust(tmp_path, "ConnectPerRequestUser", "--server", "selectors", "--connections-total", "300")
    try:
        for test in (1, 2):
            answer = web.post("/swarm", {"user_count": 5, "spawn_rate": 5, "host": ""})
            assert answer["success"], answer

            def finished() -> dict[tuple[str, str], int] | None:
                stats = web.get("/stats/requests")
                done = {(s["method"], s["name"]): s["num_requests"] for s in stats["stats"]}
                return done if stats["state"] == "stopped" and done.get(("ECHO", "connect-per-request")) else None

            done = wait_for(finished, timeout=30)
            assert done and done[("ECHO", "connect-per-request")] == 300, (test, web.get("/stats/requests"))
            web.post("/stop", {})
            urllib.request.urlopen(web.url + "/stats/reset", data=b"", timeout=10).close()  # answers "ok"
            # /stats/requests is cached for ~2 s: wait until it shows the reset before the next test.
            assert wait_for(lambda: not finished(), timeout=10)
    finally:
        web.stop()


def test_headless_run_prints_the_live_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            LOCUST,
            "-f",
            LOCUSTFILE,
            "--headless",
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "4s",
            "--server",
            "blocking",
            "--live-interval",
            "1",
            "--report-dir",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if "socklab live:" in line]
    assert len(lines) >= 3, out.stderr[-2000:]
    assert re.search(r"server ESTABLISHED 3 .* accept queue 2/128 .* users served 1/3 starved 2", lines[-1]), lines[-1]
    # The two starved users' first requests have waited since the start: news, unlike the served one's.
    assert re.search(r"waiting ≥ [0-9.]+ s: 2 requests$", lines[-1]), lines[-1]


def test_monitor_tail_reads_whole_rows_once_and_starts_over_on_a_new_file(tmp_path: Path) -> None:
    from loadtest.measure.live import LiveFeed, MonitorTail

    path = tmp_path / "monitor.csv"
    path.write_text("timestamp,accept_queue,TcpExt_ListenOverflows\n1.0,0,0\n2.0,3,")
    tail = MonitorTail(path)
    assert [r["accept_queue"] for r in tail.read()] == [0.0]  # the half-written row waits
    with path.open("a") as f:
        f.write("5\n3.0,4,9\n")
    assert [r["accept_queue"] for r in tail.read()] == [3.0, 4.0] and tail.read() == []
    feed = LiveFeed(monitor=tail)
    feed.window_baseline = {"TcpExt_ListenOverflows": 5.0}
    assert feed.window_delta("TcpExt_ListenOverflows") == 4  # this test's overflows, not the server's life's
    path.write_text("timestamp,accept_queue,TcpExt_ListenOverflows\n9.0,1,0\n")  # a new monitor
    assert [r["timestamp"] for r in tail.read()] == [9.0] and len(tail.rows) == 1
