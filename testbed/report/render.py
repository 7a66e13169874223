"""Render report.html (self-contained: inline SVG, inline CSS) and summary.json from a run dir.

One page for every kind of run (scenario, demo, load, bench), in the order a consortium reads
it: the verdict with its evidence, the per-organization pedometer, the CTI exchanges, the
agreement of the nodes, the load rounds, resources, then the time series.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from testbed.report import plots
from testbed.report.data import RunData
from testbed.report.summary import fault_periods, per_second, summarize
from testbed.runs import RunDir

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:64em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#070}.fail{color:#b00}
.empty{color:#888}.badge{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff;font-weight:bold}
.badge.pass{background:#2a7d2a}.badge.fail{background:#b00}.badge.other{background:#777}
.error{border:1px solid #b00;background:#fff4f4;padding:.5em 1em}small{color:#666}svg{max-width:100%;height:auto}
nav a{margin-right:1em}"""
SECTIONS = (("verdict", "Verdict"), ("pedometer", "Pedometer"), ("cti", "CTI exchanges"), ("agreement", "Agreement"),
            ("load", "Load"), ("resources", "Resources"), ("series", "Time series"))
MAX_TASK_ROWS = 60


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _table(headers: list[str], rows: list[list], numeric: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)

    def cell(c) -> str:
        cls = ' class="n"' if numeric and isinstance(c, (int, float)) and not isinstance(c, bool) else ""
        return f"<td{cls}>{html.escape(_fmt(c))}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _badge(status: str | None) -> str:
    cls = {"passed": "pass", "failed": "fail", "error": "fail"}.get(status or "", "other")
    return f'<span class="badge {cls}">{html.escape(str(status or "unknown"))}</span>'


def _evidence(items: list) -> str:
    return "; ".join(json.dumps(e, sort_keys=True)[:300] for e in items[:3]) + (" ..." if len(items) > 3 else "")


def _verdict(s: dict) -> str:
    parts = [f"<p>{_badge(s['status'])} <small>{html.escape(s['kind'])} run</small></p>"]
    if s.get("error"):
        parts.append(f'<p class="error">{html.escape(s["error"])}</p>')
    if s["assertions"]:
        parts.append(_table(["assertion", "result", "detail", "evidence"],
                            [[a["name"], "pass" if a["passed"] else "FAIL", a["detail"], _evidence(a.get("evidence") or [])]
                             for a in s["assertions"]], numeric=False))
    elif s["checks"]:
        parts.append(_table(["check", "result", "detail"],
                            [[c["name"], "pass" if c["passed"] else "FAIL", c["detail"]] for c in s["checks"]], numeric=False))
    else:
        parts.append(_empty("This kind of run judges no assertions; its figures follow."))
    return "".join(parts)


def _pedometer(p: dict | None) -> str:
    if p is None:
        return _empty("No pedometer: the CTI contracts are not deployed on this run's network.")
    if p.get("error"):
        return f'<p class="error">{html.escape(p["error"])}</p>'
    kinds = [k for k in p["kinds"] if p["totals"].get(k) or k in ("published", "requested", "solved")]
    rows = [[o["name"] + ("" if o["active"] else " (removed)")]
            + [f"{o['counts'].get(k, 0):,} (+{o['change'].get(k, 0):,})" for k in kinds] for o in p["organizations"]]
    parts = [f"<p>Every Activity counter of every organization, read from the chain at the final common head "
             f"<b>#{p['block']}</b>; in parentheses the change during the run (since #{p['since']}). "
             "Zero columns are left out.</p>",
             _table(["organization"] + [k.replace("_", " ") for k in kinds], rows, numeric=False),
             plots.pedometer(p)]
    if p["mismatches"]:
        parts.append('<p class="error"><b>The counters do not match the Step events</b> (recomputed up to the same block):</p>'
                     + _table(["organization", "counter", "contract", "from events"],
                              [[m["org"], m["kind"], m["counter"], m["events"]] for m in p["mismatches"]]))
    else:
        parts.append('<p class="pass">Every counter equals the sum of its Step events up to the same block.</p>')
    return "".join(parts)


def _clock(t: float | None, t0: float | None) -> str:
    if t is None:
        return "-"
    return f"+{t - t0:.0f}s" if t0 is not None else time.strftime("%H:%M:%S", time.gmtime(t))


def _cti(t: dict | None) -> str:
    if t is None:
        return _empty("No CTI exchanges recorded (no contracts on this network).")
    if not t["count"]:
        return _empty("No task was requested during this run.")
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(t["outcomes"].items()))
    parts = [f"<p><b>{t['count']}</b> tasks: {html.escape(outcomes)}; {t['rated']} rated, "
             f"<span class=\"{'fail' if t['disputed'] else ''}\">{t['disputed']} disputed</span> "
             "(a dispute: the delivered data is not what the listing's content hash promised).</p>",
             _table(["stage (block time)", "tasks", "median s", "p95 s", "max s"],
                    [[label, v["count"], v["median_s"], v["p95_s"], v["max_s"]] for label, v in t["stages"].items()])]
    t0 = min((r["requested"] for r in t["rows"] if r.get("requested")), default=None)
    shown = t["rows"][:MAX_TASK_ROWS]
    parts.append(_table(["task", "token", "consumer", "requested", "accepted", "finished", "verdict", "served by"],
                        [[r["task"], r["token"], r.get("consumer_org", "-"), _clock(r.get("requested"), t0),
                          _clock(r.get("accepted"), t0), _clock(r.get("closed"), t0) + (f" ({r['outcome']})" if r.get("outcome") else ""),
                          (r.get("verdict") or "-") + (f" {_clock(r.get('verdict_at'), t0)}" if r.get("verdict_at") else ""),
                          r.get("solver", "-")] for r in shown], numeric=False))
    if len(t["rows"]) > len(shown):
        parts.append(_empty(f"... and {len(t['rows']) - len(shown)} more tasks (all of them in summary.json)."))
    return "".join(parts)


def _agreement(s: dict, data: RunData, faults: list[dict]) -> str:
    a = s["agreement"]
    if a is None:
        parts = [_empty("No agreement check in this run.")]
    else:
        cls = "pass" if a.get("agreed") else "fail"
        parts = [f'<p class="{cls}"><b>{"agreed" if a.get("agreed") else "DISAGREED"}</b>: {html.escape(str(a.get("summary", "")))}</p>']
    m = s.get("monitor")
    if m:
        parts.append(_table(["figure", "value"], [
            ["heights compared", m.get("heights_checked")], ["common height", m.get("common_height")],
            ["samples", m.get("samples")], ["blocks per minute", m.get("blocks_per_min")],
            ["reorgs (max depth)", f"{len(m.get('reorgs') or [])} ({m.get('max_reorg_depth', 0)})"],
            ["transient divergences", m.get("transient_divergences")], ["stalls", len(m.get("stalls") or [])],
            ["state views that differ", len(m.get("state_mismatches") or [])],
            ["validator sets agree", m.get("validator_sets_agree")]], numeric=False))
        sets = m.get("validator_sets") or {}
        if sets:
            parts.append(_table(["node", "validators"], [[n, ", ".join(v[:6] for v in vs)] for n, vs in sorted(sets.items())],
                                numeric=False))
        for key, label in (("divergences", "divergences"), ("reorgs", "reorgs"), ("stalls", "stalls"),
                           ("state_mismatches", "state views that differ")):
            if m.get(key):
                parts.append(f"<h3>{label}</h3><pre>{html.escape(json.dumps(m[key][:20], indent=1))}</pre>")
    parts += ["<h3>Head lag</h3>", plots.head_lag(data.heads, faults),
              _table(["node", "max lag (blocks)", "p95 lag", "samples without answer"],
                     [[n, v["max"], v["p95"], v["no_answer"]] for n, v in s["head_lag_blocks"].items()])]
    return "".join(parts)


def _load(s: dict) -> str:
    if not s["rounds"]:
        return _empty("No load in this run.")
    lat = lambda r, k: r["latency"].get(k)  # noqa: E731
    parts = [_table(["round", "succeeded", "failed", "send rate tx/s", "throughput tx/s", "min s", "avg s", "p50 s",
                     "p95 s", "p99 s", "max s"],
                    [[r["name"], r["succeeded"], r["failed"], r["send_rate_tps"], r["throughput_tps"], lat(r, "min_s"),
                      lat(r, "mean_s"), lat(r, "p50_s"), lat(r, "p95_s"), lat(r, "p99_s"), lat(r, "max_s")] for r in s["rounds"]]),
             "<p><small>As Hyperledger Caliper reports a round: send rate = submitted per second of submitting; "
             "throughput = included per second from the first submission to the last inclusion; latency = submit to "
             "inclusion seen by the harness.</small></p>"]
    if s["bench"]:
        b = s["bench"]
        parts += [f"<p>Bench: max sustainable included TPS <b>{_fmt(b.get('max_sustainable_included_tps'))}</b> "
                  f"(target {_fmt(b.get('max_sustainable_target_tps'))}); stopped: {html.escape(str(b.get('stop_reason')))}</p>"]
    parts += ["<h3>Transactions per organization</h3>",
              _table(["organization", "statuses"], [[org, c] for org, c in s["per_org_load"].items()], numeric=False)]
    if s["failure_reasons"]:
        parts.append(_table(["failure", "count"], [[r, n] for r, n in s["failure_reasons"].items()]))
    return "".join(parts)


def _resources(s: dict, data: RunData) -> str:
    if not s["cpu"]:
        return _empty("No resource samples in this run (load and bench runs sample the node processes).")
    notes = {"psutil": "Sampled once a second with psutil from this machine's processes. Network I/O is that of the "
                       "process's network namespace without loopback: per organization on the netns backend; on the "
                       "local backend every node shares the machine's (nodes talk over loopback, so it stays near zero).",
             "prometheus": "From Prometheus: what each node reports about itself wherever it runs (geth and GoQuorum: "
                           "CPU refreshed every 3 s, memory = Go heap held, not RSS; network = devp2p bytes; Besu: "
                           "CPU and RSS), one point a second; 'machine' rows come from node-exporter."}
    sources = s["cpu"].get("sources") or ["psutil"]
    return (_table(["process", "CPU % of one core (mean)", "max memory MB", "disk read MB", "disk write MB",
                    "net in MB", "net out MB"],
                   [[name, v["cpu_percent"], _memory(v), v.get("read_mb"), v.get("write_mb"), v.get("rx_mb"),
                     v.get("tx_mb")] for name, v in sorted(s["cpu"]["per_process"].items())])
            + "".join(f"<p><small>{html.escape(notes[source])}</small></p>" for source in sources if source in notes)
            + plots.resources(data.resources))


def _memory(figures: dict) -> str | float | None:
    """The peak memory figure of a process, named when it is not the RSS."""
    if figures.get("rss_mb_max") is not None:
        return figures["rss_mb_max"]
    if figures.get("heap_mb_max") is not None:
        return f"{figures['heap_mb_max']} (Go heap)"
    if figures.get("used_mb_max") is not None:
        return f"{figures['used_mb_max']} (machine in use)"
    return None


def render_html(data: RunData, summary: dict) -> str:
    s = summary
    series = per_second(data)
    faults = fault_periods(data.events)
    latencies = [t["included_time"] - t["submit_time"] for t in data.txs
                 if t["status"] == "included" and t.get("submit_time") is not None]
    title = html.escape(str(s["run"]))
    body = {
        "verdict": _verdict(s), "pedometer": _pedometer(s["pedometer"]), "cti": _cti(s["tasks"]),
        "agreement": _agreement(s, data, faults), "load": _load(s), "resources": _resources(s, data),
        "series": "".join([plots.throughput(series, faults), plots.latency_over_time(series, faults),
                           plots.latency_histogram(latencies), plots.block_intervals(data.blocks, faults)]),
    }
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>run {title}</title><style>{CSS}</style></head><body>",
             f"<h1>Run {title}</h1>",
             "<nav>" + "".join(f'<a href="#{key}">{label}</a>' for key, label in SECTIONS) + "</nav>"]
    for key, label in SECTIONS:
        parts += [f'<h2 id="{key}">{label}</h2>', body[key]]
    if s["interventions"]:
        parts += ["<h2>Interventions</h2>",
                  '<p class="fail">The chain stood still on competing Clique branches of equal weight; the harness '
                  "rewound the nodes below off one branch (debug_setHead) so they followed the other.</p>",
                  _table(["time", "after", "stalled (s)", "rewound (node: to block)"],
                         [[i["time"], ", ".join(i["after"]), i["stalled_s"],
                           ", ".join(f"{n}: #{h}" for n, h in sorted(i["rewound"].items()))] for i in s["interventions"]])]
    if faults:
        parts += ["<h2>Faults</h2>", _table(["fault", "start", "end"], [[f["label"], f["start"], f["end"]] for f in faults])]
    parts.append("</body></html>")
    return "\n".join(parts)


def render(run_dir: Path) -> tuple[Path, Path]:
    """Write report.html and summary.json into `run_dir`, from its files alone."""
    run = RunDir(Path(run_dir))
    data = RunData.load(run.root)
    summary = summarize(data)
    json_path = run.write_json("summary.json", summary)
    return run.write_text("report.html", render_html(data, summary)), json_path
