"""Render report.html (self-contained: inline SVG, inline CSS) and summary.json from a run dir."""

from __future__ import annotations

import html
import json
from pathlib import Path

from testbed.report import plots
from testbed.report.data import RunData
from testbed.report.summary import fault_periods, per_second, summarize
from testbed.state import write_json_atomic

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
th{background:#f3f3f3}.pass{color:#070}.fail{color:#b00}.empty{color:#888}svg{max-width:100%;height:auto}"""


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _activity_table(activity) -> str:
    """activity.json: a list of per-organization dicts, or {"organizations": [...]}, or {org: {...}}."""
    if not activity:
        return '<p class="empty">No activity.json in this run (written by the CTI contracts layer).</p>'
    rows = activity.get("organizations", activity) if isinstance(activity, dict) else activity
    if isinstance(rows, dict):
        rows = [{"organization": org, **(v if isinstance(v, dict) else {"value": v})} for org, v in rows.items()]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return _table(columns, [[row.get(c) for c in columns] for row in rows])


def _summary_rows(s: dict) -> list[list]:
    o = s["overall"] or {}
    lat = s["latency"]
    rows = [
        ["transactions", s["total"]], *[[f"  {k}", v] for k, v in sorted(s["transactions"].items())],
        ["unaccounted", s["unaccounted"]],
        ["target TPS (mean)", o.get("target_tps")], ["offered TPS", o.get("offered_tps")],
        ["included TPS (from blocks)", o.get("included_tps")], ["included / offered", o.get("included_ratio")],
        ["latency p50 / p95 / p99 / max (s)", " / ".join(_fmt(lat[k]) for k in ("p50_s", "p95_s", "p99_s", "max_s"))],
        ["blocks", s["blocks"]],
        ["reorgs seen by the block watcher (count / max depth)", f"{s['reorgs_seen']['count']} / {s['reorgs_seen']['max_depth']}"],
        ["block interval mean / p95 / max (s)", " / ".join(_fmt(s["block_interval_s"][k]) for k in ("mean", "p95", "max"))],
    ]
    if s["cpu"]:
        rows += [["generator CPU (% of one core)", s["cpu"]["generator_percent"]],
                 ["node processes CPU (sum, % of one core)", s["cpu"]["nodes_percent"]]]
        rows += [[f"  {name} CPU % / max RSS MB", f"{v['cpu_percent']} / {v['rss_mb_max']}"]
                 for name, v in sorted(s["cpu"]["per_process"].items())]
    rows += [[f"failure: {reason}", count] for reason, count in s["failure_reasons"].items()]
    return rows


def render_html(data: RunData, summary: dict) -> str:
    series = per_second(data)
    faults = fault_periods(data.events)
    latencies = [t["included_time"] - t["submit_time"] for t in data.txs
                 if t["status"] == "included" and t.get("submit_time") is not None]
    agreement = summary["agreement"]
    if agreement is None:
        verdict = '<p class="empty">No agreement check recorded in this run.</p>'
    else:
        cls = "pass" if agreement.get("agreed") else "fail"
        verdict = f'<p class="{cls}"><b>{"agreed" if agreement.get("agreed") else "DISAGREED"}</b>: ' \
                  f'{html.escape(str(agreement.get("summary", "")))}</p>'
    if summary["checks"]:
        verdict += _table(["check", "result", "detail"],
                          [[c["name"], "pass" if c["passed"] else "FAIL", c["detail"]] for c in summary["checks"]])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>run {html.escape(str(summary['run']))}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Run {html.escape(str(summary['run']))}</h1><p>status: <b>{html.escape(str(summary['status']))}</b></p>",
             "<h2>Summary</h2>", _table(["figure", "value"], _summary_rows(summary)),
             "<h2>Agreement verdict</h2>", verdict]
    if summary["bench"]:
        b = summary["bench"]
        parts += ["<h2>Bench steps</h2>",
                  f"<p>max sustainable included TPS: <b>{_fmt(b.get('max_sustainable_included_tps'))}</b> "
                  f"(target {_fmt(b.get('max_sustainable_target_tps'))}); stopped: {html.escape(str(b.get('stop_reason')))}</p>",
                  _table(["target", "offered", "included (steady)", "ratio", "p50 s", "p95 s", "p99 s", "agreed", "gen CPU %", "nodes CPU %"],
                         [[s["target_tps"], s["offered_tps"], s.get("included_tps_steady"), s["included_ratio"], s["latency"]["p50_s"],
                           s["latency"]["p95_s"], s["latency"]["p99_s"], (s.get("agreement") or {}).get("agreed"),
                           (s.get("cpu") or {}).get("generator_percent"), (s.get("cpu") or {}).get("nodes_percent")]
                          for s in b["steps"]])]
    parts += ["<h2>Throughput</h2>", plots.throughput(series, faults),
              "<h2>Latency</h2>", plots.latency_over_time(series, faults), plots.latency_histogram(latencies),
              "<h2>Blocks</h2>", plots.block_intervals(data.blocks, faults),
              "<h2>Head lag</h2>", plots.head_lag(data.heads, faults),
              _table(["node", "max lag", "p95 lag", "samples without answer"],
                     [[n, v["max"], v["p95"], v["no_answer"]] for n, v in summary["head_lag_blocks"].items()]),
              "<h2>Per-organization activity</h2>", _activity_table(data.activity),
              "<h3>Load transactions per organization</h3>",
              _table(["organization", "statuses"], [[org, c] for org, c in summary["per_org_load"].items()])]
    if summary["interventions"]:
        parts += ["<h2>Interventions</h2>",
                  '<p class="fail">The chain stood still on competing Clique branches of equal weight; the harness '
                  "rewound the nodes below off one branch (debug_setHead) so they followed the other.</p>",
                  _table(["time", "after", "stalled (s)", "rewound (node: to block)"],
                         [[i["time"], ", ".join(i["after"]), i["stalled_s"],
                           ", ".join(f"{n}: #{h}" for n, h in sorted(i["rewound"].items()))] for i in summary["interventions"]])]
    if faults:
        parts += ["<h2>Faults</h2>", _table(["fault", "start", "end"], [[f["label"], f["start"], f["end"]] for f in faults])]
    parts.append("</body></html>")
    return "\n".join(parts)


def render(run_dir: Path) -> tuple[Path, Path]:
    """Write report.html and summary.json into `run_dir`, from its files alone."""
    run_dir = Path(run_dir)
    data = RunData.load(run_dir)
    summary = summarize(data)
    json_path = run_dir / "summary.json"
    write_json_atomic(json_path, summary)
    html_path = run_dir / "report.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render_html(data, summary))
    tmp.replace(html_path)
    return html_path, json_path
