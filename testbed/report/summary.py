"""Figures recomputed from raw records (pure): per window, per second, and for a whole run.

Definitions (the same everywhere, so the bench, the report and the tests agree):
- offered TPS: transactions handed to a node (accepted or rejected) with submit_time in
  the window, divided by the window length;
- target TPS: mean of the profile's target rate sampled in the window;
- included TPS (from blocks): load transactions in blocks whose timestamp falls in the
  window, divided by the window length (and "steady": the same without the first
  `warmup` seconds, while the pipeline fills);
- included ratio: of the transactions submitted in the window, the share included;
- latency: included_time - submit_time (harness clocks; included_time is when the block
  watcher first saw the block), percentiles by nearest rank (testbed.metrics.percentile).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean

from testbed.metrics import block_intervals, latency_summary, percentile
from testbed.report import cti
from testbed.report.data import RunData


def _load_txs(block: dict) -> int:
    return block.get("load_txs", block.get("tx_count", 0))


IO_FIELDS = ("read_mb", "write_mb", "rx_mb", "tx_mb")


def _io_during(rows: list[dict]) -> dict:
    """Disk and network I/O during the window: the counters' growth (a restarted process starts
    again from zero: its growth is summed per pid)."""
    out = {}
    for key in IO_FIELDS:
        by_pid: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if r.get(key) is not None:
                by_pid[r["pid"]].append(r[key])
        if by_pid:
            out[key] = round(sum(max(v) - min(v) for v in by_pid.values()), 3)
    return out


def _resource_window(data: RunData, submits: list, start: float, end: float) -> tuple[float, float]:
    """The load's window when the run offered load; else the whole span of the samples."""
    if submits:
        return start, end
    times = [r["time"] for r in data.resources]
    return min(times), max(times)


def cpu_figures(resources: list[dict], start: float, end: float) -> dict:
    """Mean CPU % (100 = one core) of the generator (with its Locust workers, `generator-w<n>`, if any),
    of the Solvers (`solver-<org>`) and of all node processes together, and peak RSS."""
    by_proc: dict[str, list[dict]] = defaultdict(list)
    for sample in resources:
        if start <= sample["time"] <= end + 1:
            by_proc[sample["process"]].append(sample)
    per_process = {name: {**_cpu_memory(rows), **_io_during(rows)} for name, rows in by_proc.items()}
    generator = [v["cpu_percent"] for k, v in per_process.items() if k.startswith("generator")]
    solvers = [v["cpu_percent"] for k, v in per_process.items() if k.startswith("solver-")]
    nodes = [v["cpu_percent"] for k, v in per_process.items() if not k.startswith(("generator", "machine", "solver-"))]
    sources = sorted({s.get("source", "psutil") for rows in by_proc.values() for s in rows})
    return {"generator_percent": round(sum(generator), 1), "solvers_percent": round(sum(solvers), 1),
            "nodes_percent": round(sum(nodes), 1), "per_process": per_process, "sources": sources}


MEMORY_FIELDS = ("rss_mb", "heap_mb", "used_mb")  # a process's RSS; a Go node's heap held; a machine's memory in use


def _cpu_memory(rows: list[dict]) -> dict:
    """Mean CPU % and the peak of each memory figure the rows carry (see MEMORY_FIELDS)."""
    cpu = [s["cpu_percent"] for s in rows if s.get("cpu_percent") is not None]
    out = {"cpu_percent": round(mean(cpu), 1) if cpu else None}
    for key in MEMORY_FIELDS:
        values = [s[key] for s in rows if s.get(key) is not None]
        if values:
            out[f"{key}_max"] = max(values)
    return out


def step_figures(data: RunData, start: float, end: float, warmup: float = 3.0) -> dict:
    """Figures for one window. `included_tps_steady` skips the first `warmup` seconds of blocks:
    inclusion trails submission by about one latency, so a window that starts with the load
    would otherwise count the pipeline filling up as lost throughput."""
    window = end - start
    sub = [t for t in data.txs if t.get("submit_time") is not None and start <= t["submit_time"] < end]
    included = [t for t in sub if t["status"] == "included"]
    latencies = [t["included_time"] - t["submit_time"] for t in included]
    in_blocks = [b for b in data.blocks if start <= b["timestamp"] < end]
    targets = [r["target"] for r in data.rates if start <= r["time"] < end and r.get("target") is not None]
    return {
        "start": start, "end": end, "seconds": round(window, 3),
        "target_tps": round(mean(targets), 2) if targets else None,
        "offered_tps": round(len(sub) / window, 2) if window > 0 else 0.0,
        "included_tps": round(sum(_load_txs(b) for b in in_blocks) / window, 2) if window > 0 else 0.0,
        "included_tps_steady": round(sum(_load_txs(b) for b in in_blocks if b["timestamp"] >= start + warmup)
                                     / (window - warmup), 2) if window > warmup else None,
        "submitted": len(sub), "included": len(included),
        "included_ratio": round(len(included) / len(sub), 4) if sub else 0.0,
        "rejected": sum(t["status"] == "rejected" for t in sub),
        "dropped": sum(t["status"] == "dropped" for t in sub),
        "latency": latency_summary(latencies),
        "cpu": cpu_figures(data.resources, start, end),
    }


def per_second(data: RunData) -> list[dict]:
    """One row per second of the run: target, offered, included (by block timestamp), latency percentiles."""
    offered = Counter(int(t["submit_time"]) for t in data.txs if t.get("submit_time") is not None)
    included = Counter()
    for block in data.blocks:
        included[int(block["timestamp"])] += _load_txs(block)
    lat: dict[int, list[float]] = defaultdict(list)
    for t in data.txs:
        if t["status"] == "included" and t.get("submit_time") is not None:
            lat[int(t["submit_time"])].append(t["included_time"] - t["submit_time"])
    target = {int(r["time"]): r["target"] for r in data.rates}
    seconds = set(offered) | set(target) | {s for s, n in included.items() if n}
    if not seconds:
        return []
    return [{"time": s, "target": target.get(s), "offered": offered.get(s, 0), "included": included.get(s, 0),
             "p50": percentile(lat[s], 50), "p95": percentile(lat[s], 95), "p99": percentile(lat[s], 99)}
            for s in range(min(seconds), max(seconds) + 1)]


def head_lag(data: RunData) -> dict[str, dict]:
    """Per node: blocks behind the highest head at each sample (max and p95); samples with no answer."""
    by_time: dict[float, dict[str, int | None]] = defaultdict(dict)
    for row in data.heads:
        by_time[row["time"]][row["node"]] = row["head"]
    lags: dict[str, list[int]] = defaultdict(list)
    silent: Counter = Counter()
    for heads in by_time.values():
        top = max((h for h in heads.values() if h is not None), default=None)
        for node, head in heads.items():
            if head is None or top is None:
                silent[node] += 1
            else:
                lags[node].append(top - head)
    return {node: {"max": max(lags[node], default=None), "p95": percentile(lags[node], 95),
                   "no_answer": silent[node]} for node in sorted(set(lags) | set(silent))}


def fault_periods(events: list[dict]) -> list[dict]:
    """(start, end, label) of faults from events.jsonl: `fault_injected` ... `fault_healed` pairs
    (matched by `fault` or `node`), or single events carrying `start`/`end`."""
    open_: dict[str, dict] = {}
    periods: list[dict] = []
    for e in sorted(events, key=lambda e: e.get("time", 0)):
        kind = e.get("event", "")
        key = str(e.get("fault") or e.get("node") or e.get("name") or "fault")
        if kind in ("fault_injected", "fault_started", "fault"):
            if "end" in e:
                periods.append({"start": e.get("start", e["time"]), "end": e["end"], "label": key})
            else:
                open_[key] = e
        elif kind in ("fault_healed", "fault_ended", "fault_finished") and key in open_:
            periods.append({"start": open_.pop(key)["time"], "end": e["time"], "label": key})
    last = max((e.get("time", 0) for e in events), default=None)
    periods += [{"start": e["time"], "end": last, "label": f"{k} (not healed)"} for k, e in open_.items()]
    return periods


def interventions(events: list[dict]) -> list[dict]:
    """What the harness did to the chain as an operator would (`branches_reconciled`: nodes rewound
    off a stuck equal-weight Clique branch, after a heal or by the stall watchdog)."""
    return [{"time": e.get("time"), "after": e.get("after") or ["heal"], "stalled_s": e.get("stalled_s"),
             "rewound": e.get("rewound") or {}} for e in events if e.get("event") == "branches_reconciled"]


FAILED = ("rejected", "dropped", "reverted", "lost")


def round_figures(name: str, txs: list[dict]) -> dict:
    """One round as Hyperledger Caliper reports it: succeeded, failed, send rate (submitted per
    second of submitting), throughput (included per second from the first submission to the
    last inclusion), latency min/avg/p50/p95/p99/max."""
    submits = [t["submit_time"] for t in txs if t.get("submit_time") is not None]
    included = [t for t in txs if t["status"] == "included" and t.get("submit_time") is not None]
    sending = (max(submits) - min(submits)) if len(submits) > 1 else 0.0
    span = (max(t["included_time"] for t in included) - min(submits)) if included else 0.0
    return {"name": name, "succeeded": len(included), "failed": sum(t["status"] in FAILED for t in txs),
            "send_rate_tps": round(len(submits) / sending, 2) if sending > 0 else None,
            "throughput_tps": round(len(included) / span, 2) if span > 0 else None,
            "latency": latency_summary([t["included_time"] - t["submit_time"] for t in included])}


def rounds(data: RunData) -> list[dict]:
    """The run's rounds: a bench's steps, a scenario's load phases, or a load run as one round."""
    if data.bench and data.bench.get("steps"):
        return [round_figures(f"step {i + 1} (target {s.get('target_tps')} tx/s)",
                              [t for t in data.txs if t.get("submit_time") is not None and s["start"] <= t["submit_time"] < s["end"]])
                for i, s in enumerate(data.bench["steps"]) if "start" in s and "end" in s]
    phases = sorted({t.get("phase") for t in data.txs if t.get("phase") is not None})
    if phases:
        return [round_figures(f"load phase {p}", [t for t in data.txs if t.get("phase") == p]) for p in phases]
    return [round_figures("load", data.txs)] if data.txs else []


def summarize(data: RunData) -> dict:
    submits = [t["submit_time"] for t in data.txs if t.get("submit_time") is not None]
    start, end = (min(submits), max(submits) + 1e-6) if submits else (0.0, 0.0)
    overall = step_figures(data, start, end) if submits else None
    statuses = Counter(t["status"] for t in data.txs)
    reasons = Counter(f"{t['status']}: {t.get('error')}" for t in data.txs if t["status"] in ("rejected", "dropped"))
    per_org: dict[str, Counter] = defaultdict(Counter)
    for t in data.txs:
        per_org[t["org"]][t["status"]] += 1
    intervals = block_intervals([b["timestamp"] for b in data.blocks])
    return {
        "run": data.root.name if data.root else None,
        "kind": data.kind,
        "status": (data.status or {}).get("status"),
        "error": data.error,
        "assertions": data.assertions,
        "rounds": rounds(data),
        "pedometer": cti.pedometer(data.activity),
        "tasks": cti.tasks(data.activity),
        "monitor": data.monitor,
        "transactions": dict(statuses), "total": len(data.txs),
        "unaccounted": statuses.get("submitted", 0) + statuses.get("signed", 0),
        "failure_reasons": dict(reasons.most_common(10)),
        "overall": overall,
        "latency": latency_summary([t["included_time"] - t["submit_time"] for t in data.txs
                                    if t["status"] == "included" and t.get("submit_time") is not None]),
        "blocks": len(data.blocks),
        "reorgs_seen": {"count": len(data.reorgs), "max_depth": max((r["depth"] for r in data.reorgs), default=0)},
        "block_interval_s": {"mean": round(mean(intervals), 3) if intervals else None,
                             "max": max(intervals, default=None), "p95": percentile(intervals, 95)},
        "head_lag_blocks": head_lag(data),
        "cpu": cpu_figures(data.resources, *_resource_window(data, submits, start, end)) if data.resources else None,
        "per_org_load": {org: dict(c) for org, c in sorted(per_org.items())},
        "faults": fault_periods(data.events),
        "interventions": interventions(data.events),
        "agreement": data.agreement,
        "checks": data.checks,
        "bench": None if not data.bench else {k: v for k, v in data.bench.items() if k != "steps"} | {
            "steps": [{k: s.get(k) for k in ("target_tps", "offered_tps", "included_tps", "included_tps_steady", "included_ratio", "latency",
                                                "agreement", "cpu")} for s in data.bench.get("steps", [])]},
    }
