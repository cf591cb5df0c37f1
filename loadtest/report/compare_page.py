"""The comparison across runs: a combined summary.csv, standings.csv and compare.html.

compare.html opens with the answer, as the sweep's page does: for each scenario its question, at most
five headlines and the designs ranked (loadtest.report.rules.answer), each with its rate, p50 and p99, who
was served, where its connections' time went and what bounds the figure.  Then the charts, as small
multiples (a panel per measure, designs side by side), each check a scenario carries (unp30's), every
finding folded by scenario, and every figure of every cell.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from loadtest.declare.experiments import EXPERIMENTS
from loadtest.declare.scenarios import SCENARIOS, Check
from loadtest.report import timeline_charts
from loadtest.report.charts import layout
from loadtest.report.load import RunData, load_run
from loadtest.report.page import ensure_plotlyjs, figure_html, page_html, table_html
from loadtest.report.rules import checks
from loadtest.report.rules.answer import NO_ESTIMATE, RULE, STAGE_WORDS, Cell, ScenarioAnswer, answer, scenario_findings
from loadtest.report.rules.judges import check_of
from loadtest.report.rules.summary_columns import SUMMARY_COLUMNS, summarize

STAGE_COLOURS = timeline_charts.COLORS  # one colour per stage of the window's account
ANSWER_STYLE = """
.answer{margin-bottom:22px} .answer h2{margin-bottom:4px} .question{color:#555;margin:0 0 6px}
ol.headlines{margin:6px 0 10px;padding-left:22px} ol.headlines li{margin:3px 0}
table.ranked td{vertical-align:middle} .bar{display:flex;width:180px;height:12px;background:#eee}
.bar span{display:block;height:12px} .badge{display:inline-block;border-radius:3px;padding:0 5px;margin:1px;
font-size:11px;background:#fde2e1;color:#8a1f11} .badge.info{background:#e8eefc;color:#1f3b8a}
.legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
details{margin:6px 0} summary{cursor:pointer;font-weight:600}
"""
INFO_BADGES = ("pipelined", NO_ESTIMATE)
VERDICT_COLOURS = {
    "holds here": "#1a7f37",
    "does not hold here": "#b42318",
    "differs": "#b54708",
    "not available here": "#666",
}


def build_compare(
    run_dirs: list[Path],
    out_dir: Path,
    title: str = "socklab comparison",
    loaded: list[tuple[RunData, dict[str, Any]]] | None = None,
) -> tuple[Path, Path]:
    """Write the combined summary.csv, standings.csv and compare.html for several runs into out_dir (`loaded`:
    the runs and their summary rows, already read by the caller).  An experiment's cells (socklab lab) open
    with its claim, its source's numbers and its verdicts instead, also written to verdicts.json."""
    runs = [r for r, _ in loaded] if loaded is not None else [load_run(Path(d)) for d in run_dirs]
    rows = [row for _, row in loaded] if loaded is not None else [summarize(r) for r in runs]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.csv"
    summary.to_csv(summary_path, index=False)
    groups = scenario_groups(runs, rows)
    cpus = max((int(r.info.get("cpus") or 0) for r in runs), default=0) or None
    trials = experiment_trials(groups)
    answers = [answer(name, cells, cpus) for name, cells in groups.items() if name not in EXPERIMENTS]
    standings_frame(answers).to_csv(out_dir / "standings.csv", index=False)
    if trials:
        write_verdicts(out_dir, trials)
    failed = [
        line
        for r, row in zip(runs, rows, strict=True)
        for line in checks.failed_lines(checks.evaluate(r, row), r.run_id)
    ]
    sections = [
        checks.box_html(failed),
        intro(runs, answers, len(trials)),
        *(check_section(t, "answer") for t in trials.values() if t is not None),
        *(answer_html(a) for a in answers),
        *chart_sections(groups, summary),
        *scenario_checks(runs, summary),
        *findings_sections(groups, cpus),
        *figure_sections(runs, summary),
    ]
    ensure_plotlyjs(out_dir)
    page = out_dir / "compare.html"
    page.write_text(page_html(title, sections, ANSWER_STYLE), encoding="utf-8")
    return summary_path, page


def experiment_trials(groups: dict[str, list[Cell]]) -> dict[str, Check | None]:
    """Each experiment's cells judged by its check: the claim, the source's numbers beside these, verdicts."""
    return {
        name: check([c.run for c in cells], pd.DataFrame([c.row for c in cells]))
        for name, cells in groups.items()
        if name in EXPERIMENTS and (check := check_of(EXPERIMENTS[name]))
    }


def write_verdicts(out_dir: Path, trials: dict[str, Check | None]) -> None:
    """verdicts.json: each experiment's title, note and verdicts, for the lab's terminal and CI."""
    (out_dir / "verdicts.json").write_text(
        json.dumps(
            {
                name: {"title": t.title, "note": t.note, "verdicts": t.verdicts}
                for name, t in trials.items()
                if t is not None
            },
            indent=1,
        )
    )


def chart_sections(groups: dict[str, list[Cell]], summary: pd.DataFrame) -> list[str]:
    """Each scenario's rates and latencies, its median connections stacked by stage; then every design's costs."""
    sections = ["<h2>Charts</h2>"]
    for i, (name, cells) in enumerate(groups.items()):
        sections.append(f"<h3>{html.escape(name)}</h3>")
        sections.append(figure_html(scenario_chart(name, pd.DataFrame([c.row for c in cells])), f"s{i}-rates"))
        medians = [
            (f"{c.row['design']} {c.row['users']}u", pick)
            for c in cells
            for kind, pick in timeline_charts.picks(timeline_charts.joined_in_window(c.run.connections))
            if kind == "median"
        ]
        breakdown = timeline_charts.compare_breakdown(medians)
        if breakdown is not None:
            sections.append(figure_html(breakdown, f"s{i}-breakdown"))
    top = summary.sort_values("users").groupby(["scenario", "design"], sort=False).tail(1)
    sections.append(figure_html(cost_chart(top), "costs"))
    return sections


def scenario_checks(runs: list[RunData], summary: pd.DataFrame) -> list[str]:
    """A scenario that carries a check: its table and verdicts."""
    sections = []
    for name, scenario in SCENARIOS.items():
        mine = [i for i, value in enumerate(summary["scenario"]) if value == name]
        check = check_of(scenario)
        result = check([runs[i] for i in mine], summary.iloc[mine]) if check and mine else None
        if result is not None:
            sections.append(check_section(result))
    return sections


def findings_sections(groups: dict[str, list[Cell]], cpus: int | None) -> list[str]:
    """Every finding, folded by scenario."""
    sections = ["<h2>Every finding</h2>"]
    for name, cells in groups.items():
        said = scenario_findings(name, cells, cpus)
        body = "".join(
            f"<h4>{html.escape(title)}</h4><ul class='findings'>"
            + "".join(f"<li>{html.escape(s)}</li>" for s in lines)
            + "</ul>"
            for title, lines in said
            if lines
        )
        sections.append(
            f"<details><summary>{html.escape(name)}: {sum(len(ls) for _, ls in said)} findings"
            f"</summary>{body}</details>"
        )
    return sections


def figure_sections(runs: list[RunData], summary: pd.DataFrame) -> list[str]:
    """Every figure of every cell, folded, and a link to each run's own page."""
    return [
        "<h2>Every figure</h2><details><summary>summary.csv: every cell, every column</summary>"
        + table_html(summary)
        + "</details>",
        "<p class='note'>Per-run pages: "
        + " · ".join(
            f"<a href='{html.escape(str(Path(r.path).resolve()))}/report.html'>{html.escape(r.run_id)}</a>"
            for r in runs
        )
        + "</p>",
    ]


def scenario_groups(runs: list[RunData], rows: list[dict]) -> dict[str, list[Cell]]:  # type: ignore[type-arg]
    """Cells by scenario, in the order they ran; a run outside any scenario by its user class and op."""
    groups: dict[str, list[Cell]] = {}
    for run, row in zip(runs, rows, strict=True):
        name = str(row["scenario"] or f"{row['user_class']} {row['op']}".strip())
        groups.setdefault(name, []).append(Cell(row, run))
    return groups


def intro(runs: list[RunData], answers: list[ScenarioAnswer], trials: int = 0) -> str:
    designs = sorted({str(r.info.get("design", "")) for r in runs})
    lab = (
        f"{trials} experiment{'s' if trials != 1 else ''} first: each claim, its source and a verdict per claim — "
        "holds here, does not hold here, differs, or not available here — with the numbers beside the source's. "
    )
    if not answers:
        return f"<p class='note'>{len(runs)} cells: {lab}</p>"
    return (
        f"<p class='note'>{len(runs)} cells: {len(answers)} scenarios × {len(designs)} designs. "
        + (lab if trials else "")
        + "Each scenario: "
        "the question, at most five headlines, then the designs ranked at its highest load, with a line saying "
        "which figure ranked it. p50 and p99 are latencies, request sent → last reply byte; where users "
        'connect for every request, "from connect": connect() start → the first reply byte, what a user '
        "waited, SYN retries included. ≥ marks a lower bound (work still in flight when the window closed)."
        f"</p><p class='note rule'>{html.escape(RULE)}"
        "</p><p class='legend note'>Where the time went, share of every user's time in the window:"
        + "".join(f"<span style='background:{c}'></span>{STAGE_WORDS[s]}" for s, c in STAGE_COLOURS.items())
        + "</p>"
    )


def answer_html(a: ScenarioAnswer) -> str:
    rows = []
    for s in a.standings:
        bar = "".join(
            f"<span style='width:{share * 100:.1f}%;background:{STAGE_COLOURS[stage]}'></span>"
            for stage, share in s.shares.items()
            if share > 0
        )
        words = ", ".join(f"{STAGE_WORDS[k]} {v:.0%}" for k, v in s.shares.items() if v >= 0.005)
        went = f"<div class='bar' title='{html.escape(words)}'>{bar}</div>" if s.shares else "<i>not measured</i>"
        badges = "".join(
            f"<span class='badge{' info' if b.startswith(INFO_BADGES) else ''}'>{html.escape(b)}</span>"
            for b in [*s.badges, *([s.waiting] if s.waiting else []), *([s.no_estimate] if s.no_estimate else [])]
        )
        rows.append(
            f"<tr><td>{s.rank}</td><td>{html.escape(s.design)}</td><td>{html.escape(s.figure)}</td>"
            f"<td>{html.escape(s.p50)}</td><td>{html.escape(s.p99)}</td><td>{s.served}</td><td>{went}</td>"
            f"<td>{badges}</td></tr>"
        )
    return (
        f"<section class='answer'><h2>{html.escape(a.scenario)}</h2>"
        + (f"<p class='question'>{html.escape(a.question)}</p>" if a.question else "")
        + "<ol class='headlines'>"
        + "".join(f"<li>{html.escape(h)}</li>" for h in a.headlines)
        + "</ol>"
        + f"<table class='ranked'><tr><th>#</th><th>design</th><th>req/s at {a.users} users</th>"
        + "".join(f"<th>{h}</th>" for h in a.latency_heads)
        + "<th>users served</th><th>where the time went</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<p class='note ranking'>{html.escape(a.ranking)}</p>" if a.ranking else "")
        + "</section>"
    )


def standings_frame(answers: list[ScenarioAnswer]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "scenario": a.scenario,
                "rank": s.rank,
                "design": s.design,
                "users": s.users,
                "rps": s.rps,
                "estimate_rps": s.estimate,
                "ranked_by": "estimate" if s.estimate is not None else "rps",
                "p50": s.p50,
                "p99": s.p99,
                "served": s.served,
                "verdict": "; ".join(s.badges),
                "waiting": s.waiting,
            }
            for a in answers
            for s in a.standings
        ]
    )


def check_section(result: Check, kind: str = "check") -> str:
    """A scenario's check: each claim said to hold or not here, with the numbers, then its table."""
    return (
        f"<section class='{kind}'><h2>{html.escape(result.title)}</h2><p class='note'>{html.escape(result.note)}</p>"
        + "<ul class='findings verdicts'>"
        + "".join(f"<li>{verdict_html(v)}</li>" for v in result.verdicts)
        + "</ul>"
        + (table_html(result.table) if result.table is not None else "")
        + "</section>"
    )


def verdict_html(text: str) -> str:
    state, sep, rest = text.partition(": ")
    if not sep or state not in VERDICT_COLOURS:
        return html.escape(text)
    return f"<b style='color:{VERDICT_COLOURS[state]}'>{html.escape(state)}</b>: {html.escape(rest)}"


def scenario_chart(name: str, g: pd.DataFrame) -> go.Figure:
    """Small multiples: requests/s, p50 and p99, a panel each; the designs side by side, a bar per load."""
    measures = (("rps", "requests/s"), ("latency_p50_ms", "p50 ms"), ("latency_p99_ms", "p99 ms"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in measures])
    for users, v in g.sort_values("users").groupby("users", sort=False):
        for col, (measure, _) in enumerate(measures, 1):
            fig.add_bar(
                x=v["design"],
                y=v[measure],
                name=f"{users} users",
                legendgroup=str(users),
                showlegend=col == 1,
                row=1,
                col=col,
            )
    for col, (measure, _) in enumerate(measures, 1):
        values = g[measure][g[measure] > 0]
        if len(values) and values.max() / values.min() >= 100:  # values spanning decades: a log axis
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(barmode="group")
    return layout(fig, f"{name}: rate and latency, design by design", 380)


def cost_chart(top: pd.DataFrame) -> go.Figure:
    """At each scenario's highest load: what each design cost and what piled up, a panel per measure."""
    panels = (
        ("server_cpu_us_per_request", "server CPU µs per request"),
        ("listen_overflows", "packets dropped at a full accept queue"),
        ("peak_time_wait", "TIME_WAIT (peak)"),
        ("rss_per_connection_bytes", "memory growth bytes per connection"),
        ("peak_threads", "threads (peak)"),
        ("peak_established", "connections (peak, server side)"),
    )
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in panels])
    for i, (column, _) in enumerate(panels):
        for scenario, v in top.groupby("scenario", sort=False):
            fig.add_bar(
                x=v["design"],
                y=v[column],
                name=str(scenario),
                legendgroup=str(scenario),
                showlegend=i == 0,
                row=i // 3 + 1,
                col=i % 3 + 1,
            )
    fig.update_layout(barmode="group")
    return layout(fig, "What each design cost at each scenario's highest load", 620)
