"""socklab in Locust's web UI: a live tab, a live chart page, and a guard on the Start button.

Locust 2.x's supported route (its ``examples/extend_web_ui.py``): ``extended_tabs``
and ``extended_tables`` in the page's template arguments, and ``extended_stats``
added to ``/stats/requests``, which the page already polls every 2 s — so the
``socklab`` tab refreshes with Locust's own polling.  The chart page (``/socklab``)
is served by the same Flask app and polls ``/socklab/data`` for the monitor rows
and latency points it does not have yet, drawn with the plotly.js socklab ships
(``/socklab/plotly.min.js``; no CDN).  The tab's "Download Data" links include it.

The guard runs before Locust's ``/swarm`` handler: it reads the form the way the
command line would, answers a bad Host or a bad option with the command line's
one-line message (Locust's page shows a swarm response's ``message``), and spawns
nobody.  An empty Host means the server socklab started.  A change to an option that
restarts the server (``--server``, ``--server-cmd`` and every option made from a server
setting: ``loadtest.declare.options.restarting_options``) restarts it — between tests; while a test
runs, a change to any socklab option is refused with a message, never silently ignored.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request
from locust.runners import STATE_RUNNING, STATE_SPAWNING

from loadtest.declare import options as opts
from loadtest.glue import locust_private
from loadtest.matrix.processes import ServerStartError
from loadtest.measure import live

TAB_KEY = "socklab"
_plotly_js: list[str] = []  # plotly.min.js, read once


def install(environment: Any, get_run: Callable[[], Any]) -> None:
    """Add the tab, the chart page and the swarm guard to this Locust's web UI."""
    web_ui = environment.web_ui
    _add_tab(web_ui)
    app = web_ui.app

    def empty_host(template_args: dict[str, Any]) -> None:
        """The form's Host starts empty when it would name socklab's own server: empty means that one."""
        run = get_run()
        idle = environment.runner.state not in (STATE_SPAWNING, STATE_RUNNING)
        if idle and run is not None and run.target and template_args.get("host") == run.target:
            template_args.update(host="", missing_host_warning=False)

    locust_private.wrap_template_args(web_ui, empty_host)

    @app.after_request
    def add_socklab_stats(response: Response) -> Response:
        run = get_run()
        if request.path != "/stats/requests" or response.status_code != 200 or run is None:
            return response
        payload = json.loads(response.get_data())
        payload["extended_stats"] = [{"key": TAB_KEY, "data": table(run)}]
        response.set_data(json.dumps(payload))
        return response

    @app.before_request
    def guard_swarm() -> Response | None:
        run = get_run()
        if request.path != "/swarm" or request.method != "POST" or run is None:
            return None
        problem = prepare_swarm(environment, run)
        if problem:
            return jsonify({"success": False, "message": problem, "host": environment.host})
        return None

    _add_chart_page(environment, get_run)


def _add_tab(web_ui: Any) -> None:
    """The socklab tab (its rows come with /stats/requests) and the chart page's link among the downloads."""
    web_ui.template_args["extended_tabs"] = [{"title": "socklab", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "figure", "title": "socklab figure"},
                {"key": "value", "title": "now"},
                {"key": "meaning", "title": "what it counts"},
            ],
        }
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./socklab", "title": "socklab live charts (accept queue, states, overflows, CPU, µs percentiles)"},
    ]


def _add_chart_page(environment: Any, get_run: Callable[[], Any]) -> None:
    """/socklab: the live charts, the data they poll, and the plotly.js they are drawn with."""
    app = environment.web_ui.app
    guarded = environment.web_ui.auth_required_if_enabled

    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    def data() -> Response:
        run = get_run()
        if run is None:
            return jsonify({})
        since_row = request.args.get("since_row", 0, type=int)
        since_point = request.args.get("since_point", 0, type=int)
        generation = request.args.get("generation", None, type=int)
        doc = run.feed.chart_data(max(since_row, 0), max(since_point, 0), generation)
        doc.update(table=table(run), tests=run.feed.tests, state=environment.runner.state, server=server_label(run))
        return jsonify(doc)

    def plotly_js() -> Response:
        if not _plotly_js:
            from plotly.offline import get_plotlyjs

            _plotly_js.append(get_plotlyjs())
        return Response(_plotly_js[0], mimetype="application/javascript", headers={"Cache-Control": "max-age=3600"})

    app.add_url_rule("/socklab", "socklab_page", guarded(page))
    app.add_url_rule("/socklab/data", "socklab_data", guarded(data))
    app.add_url_rule("/socklab/plotly.min.js", "socklab_plotly", guarded(plotly_js))


def server_label(run: Any) -> str:
    if run.server is None:
        return f"{run.environment.host or 'none'} (not started by socklab: not monitored)"
    return f"{run.design} pid {run.server.pid} on {run.target}, backlog {run.server.backlog}"


def table(run: Any) -> list[dict[str, str]]:
    run.feed.monitor.read()  # the newest sample, not the one of the last tick
    processes = run.load_processes.values()
    retrans = sum(int(p.get("syn_retrans", 0)) for p in processes) if processes else None
    return live.figures(run.feed, run.store, run.user_figures(), server_label(run), retrans).rows


def prepare_swarm(environment: Any, run: Any) -> str | None:
    """Check a Start (or Edit) from the web UI as the command line would; apply server changes.

    Returns the one-line problem, or None once the run is ready: the server it names is up
    and the form's Host is rewritten to its address (Locust sets ``environment.host`` from it).
    """
    form = request.form
    current = environment.parsed_options
    candidate = argparse.Namespace(**vars(current))
    for option in opts.OPTIONS:
        if not option.web_ui or option.dest not in form:
            continue
        text = form[option.dest]
        try:
            value = text.lower() in ("true", "on", "1", "yes") if option.type is bool else option.type(text)
        except ValueError:
            return f"{option.flag} {text!r} is not a {option.type.__name__}"
        if option.choices and value not in option.choices:
            return f"{option.flag} {text!r}: choose one of {', '.join(option.choices)}"
        setattr(candidate, option.dest, value)
    host = str(form.get("host", environment.host or "")).strip()
    if host == run.target:
        host = ""  # the address of the server socklab started is the same as leaving the field empty
    problem = opts.run_problem(candidate, host or None)
    if problem:
        return problem
    changed = [o for o in opts.OPTIONS if getattr(candidate, o.dest, None) != getattr(current, o.dest, None)]
    if environment.runner.state in (STATE_SPAWNING, STATE_RUNNING):
        if changed:
            names = ", ".join(o.flag for o in changed)
            return f"{names} cannot change while a test runs; press Stop, then start a new test with it"
        if host and run.server is not None:
            return f"--host {host} cannot change while a test runs; press Stop first"
    else:
        problem = _apply_server(run, candidate, host or None, changed)
        if problem:
            return problem
    target = run.target or host
    if not target:
        return "no server to load: give the Host as tcp://HOST:PORT, or set --server to a design"
    items = [(k, v) for k, v in form.items(multi=True) if k != "host"]
    locust_private.replace_form(request, [*items, ("host", target)])
    return None


def _apply_server(run: Any, candidate: argparse.Namespace, host: str | None, changed: list[Any]) -> str | None:
    """Between tests: start, restart or drop socklab's server to match the form."""
    want = opts.starts_server(candidate, host)
    restarting = opts.restarting_options()
    server_changed = any(o in restarting for o in changed)
    if not want:
        if run.server is not None:
            run.drop_server()
        return None
    if run.server is not None and not server_changed:
        return None
    design = opts.design_of(candidate, host)
    try:
        run.restart_server(design, candidate)
    except ServerStartError as exc:
        run.drop_server()
        return f"could not start the {design} server: {exc}"
    return None


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>socklab live</title>
<link rel="icon" href="data:,"><script src="socklab/plotly.min.js"></script>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222} h1{font-size:20px;margin:0 0 4px}
.note{color:#666;font-size:13px} .grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.chart{height:300px;border:1px solid #eee} table{border-collapse:collapse;font-size:12px;margin-top:12px}
td{border:1px solid #ddd;padding:2px 6px} td:nth-child(2){text-align:right;font-design-numeric:tabular-nums}
</style></head><body>
<h1>socklab live</h1>
<div class="note"><span id="server"></span> · state <b id="state"></b> · counters <span id="scope"></span> ·
refreshed every 2 s from the monitor (monitor.csv) and the master's µs histograms ·
ListenOverflows counts packets dropped at a full accept queue (SYNs, final ACKs, early data), not SYNs ·
<a href="./">back to Locust</a></div>
<div class="grid" id="charts"><div id="latency" class="chart"></div></div>
<table id="figures"></table>
<script>
"use strict";
// The charts are loadtest.declare.columns.CHARTS, sent by the server with the data: defined once, in Python.
const state = {row: 0, point: 0, generation: "", monitor: {}, latency: {}, charts: []};
const layout = (title, ytitle, extra) => Object.assign({title: {text: title, font: {size: 14}},
  margin: {l: 55, r: 10, t: 36, b: 36}, xaxis: {type: "date"}, yaxis: {title: ytitle, rangemode: "tozero"},
  legend: {orientation: "h", y: -0.2}, template: "plotly_white"}, extra || {});
const x = () => (state.monitor.timestamp || []).map(t => new Date(t * 1000));
const trace = (chart, s) => ({x: x(), y: (state.monitor[s.column] || []).map(v => v * s.scale + s.offset),
  name: s.name, mode: "lines", type: "scatter", line: {dash: s.dash},
  stackgroup: chart.stacked ? chart.key : undefined});
function draw() {
  const grid = document.getElementById("charts");
  for (const chart of state.charts) {
    let div = document.getElementById(chart.key);
    if (!div) {
      div = document.createElement("div"); div.id = chart.key; div.className = "chart"; grid.appendChild(div);
    }
    Plotly.react(div, chart.series.map(s => trace(chart, s)), layout(chart.title, chart.y_title));
  }
  const traces = Object.entries(state.latency).flatMap(([key, s]) => [
    {x: s.t, y: s.p50, name: key + " p50", mode: "lines", type: "scatter"},
    {x: s.t, y: s.p99, name: key + " p99", mode: "lines", type: "scatter", line: {dash: "dot"}}]);
  Plotly.react("latency", traces, layout("µs latency per 2 s interval (finished requests)", "µs",
    {yaxis: {title: "µs", type: "log"}}));
}
async function poll() {
  try {
    const r = await fetch(`socklab/data?since_row=${state.row}&since_point=${state.point}` +
      `&generation=${state.generation}`);
    const d = await r.json();
    if (d.reset) { state.monitor = {}; }
    state.generation = d.generation;
    for (const [c, values] of Object.entries(d.monitor || {})) {
      state.monitor[c] = (state.monitor[c] || []).concat(values);
    }
    for (const p of d.latency || []) {
      const key = p.type + " " + p.name;
      const s = state.latency[key] = state.latency[key] || {t: [], p50: [], p99: []};
      s.t.push(new Date(p.t * 1000)); s.p50.push(p.p50_us); s.p99.push(p.p99_us);
    }
    state.row = d.next_row; state.point = d.next_point; state.charts = d.charts || state.charts;
    document.getElementById("server").textContent = d.server;
    document.getElementById("state").textContent = d.state;
    document.getElementById("scope").textContent = d.counters_scope;
    document.getElementById("figures").innerHTML = (d.table || []).map(f =>
      `<tr><td>${esc(f.figure)}</td><td>${esc(f.value)}</td><td class="note">${esc(f.meaning)}</td></tr>`).join("");
    draw();
  } catch (e) { document.getElementById("state").textContent = "unreachable"; }
  setTimeout(poll, 2000);
}
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
poll();
</script></body></html>
"""
