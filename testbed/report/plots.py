"""Plots as inline SVG strings (matplotlib, Agg backend, imported on first use)."""

from __future__ import annotations

import io
from collections import defaultdict


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "figure.dpi": 96})
    return plt


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    _plt().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _shade(ax, faults: list[dict], t0: float) -> None:
    for i, f in enumerate(faults):
        ax.axvspan(f["start"] - t0, f["end"] - t0, color="tab:red", alpha=0.12, label="fault" if i == 0 else None)


def _empty(title: str) -> str:
    return f'<p class="empty">{title}: no data in this run.</p>'


def throughput(series: list[dict], faults: list[dict]) -> str:
    if not series:
        return _empty("throughput")
    plt = _plt()
    t0 = series[0]["time"]
    xs = [r["time"] - t0 for r in series]
    fig, ax = plt.subplots(figsize=(8, 3))
    if any(r["target"] is not None for r in series):
        ax.step(xs, [r["target"] if r["target"] is not None else float("nan") for r in series], where="post",
                color="grey", ls="--", label="target")
    ax.plot(xs, [r["offered"] for r in series], label="offered (submitted/s)")
    ax.bar(xs, [r["included"] for r in series], width=0.9, alpha=0.45, color="tab:green", label="included (by block)")
    _shade(ax, faults, t0)
    ax.set(xlabel="seconds since start", ylabel="tx/s", title="Offered vs included TPS")
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def latency_over_time(series: list[dict], faults: list[dict]) -> str:
    rows = [r for r in series if r["p50"] is not None]
    if not rows:
        return _empty("latency")
    plt = _plt()
    t0 = series[0]["time"]
    fig, ax = plt.subplots(figsize=(8, 3))
    for key, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        ax.plot([r["time"] - t0 for r in rows], [r[key] for r in rows], label=key, color=colour, lw=1)
    _shade(ax, faults, t0)
    ax.set(xlabel="submit time, seconds since start", ylabel="seconds", title="Submit -> inclusion latency per second")
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def latency_histogram(latencies: list[float]) -> str:
    if not latencies:
        return _empty("latency histogram")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.hist(latencies, bins=60, color="tab:blue")
    ax.set(xlabel="seconds", ylabel="transactions", title=f"Latency histogram ({len(latencies)} included)")
    return _svg(fig)


def block_intervals(blocks: list[dict], faults: list[dict]) -> str:
    ordered = sorted(blocks, key=lambda b: b["number"])
    if len(ordered) < 2:
        return _empty("block intervals")
    plt = _plt()
    t0 = ordered[0]["timestamp"]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot([b["timestamp"] - t0 for b in ordered[1:]],
            [b["timestamp"] - a["timestamp"] for a, b in zip(ordered, ordered[1:])], marker=".", lw=0.6)
    ax2 = ax.twinx()
    ax2.bar([b["timestamp"] - t0 for b in ordered], [b["tx_count"] for b in ordered], alpha=0.25, color="tab:green")
    ax2.set_ylabel("txs in block")
    _shade(ax, faults, t0)
    ax.set(xlabel="block time, seconds since first block", ylabel="interval (s)", title="Block intervals")
    return _svg(fig)


def head_lag(heads: list[dict], faults: list[dict]) -> str:
    if not heads:
        return _empty("head lag")
    plt = _plt()
    by_time: dict[float, dict] = defaultdict(dict)
    for row in heads:
        by_time[row["time"]][row["node"]] = row["head"]
    t0 = min(by_time)
    nodes = sorted({row["node"] for row in heads})
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for node in nodes:
        xs, ys = [], []
        for t, hs in sorted(by_time.items()):
            top = max((h for h in hs.values() if h is not None), default=None)
            if hs.get(node) is not None and top is not None:
                xs.append(t - t0)
                ys.append(top - hs[node])
        ax.step(xs, ys, where="post", label=node, lw=1)
    _shade(ax, faults, t0)
    ax.set(xlabel="seconds since start", ylabel="blocks behind", title="Head lag per node")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    return _svg(fig)


def pedometer(pedo: dict | None) -> str:
    """Grouped bars: each organization's main counters at the final head."""
    if not pedo or pedo.get("error") or not pedo.get("organizations"):
        return _empty("pedometer")
    kinds = [k for k in pedo["kinds"] if pedo["totals"].get(k)][:12]
    if not kinds:
        return _empty("pedometer (every counter is zero)")
    plt = _plt()
    orgs = pedo["organizations"]
    width = 0.8 / len(orgs)
    fig, ax = plt.subplots(figsize=(8, 3))
    for i, org in enumerate(orgs):
        ax.bar([k + i * width for k in range(len(kinds))], [org["counts"].get(kind, 0) for kind in kinds], width,
               label=org["name"])
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(kinds))], [k.replace("_", " ") for k in kinds],
                  rotation=30, ha="right")
    ax.set(ylabel="count", title=f"Activity per organization at block #{pedo['block']}")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7, ncol=4)
    return _svg(fig)


def resources(samples: list[dict]) -> str:
    """CPU % and RSS of every sampled process over time."""
    if not samples:
        return _empty("resources")
    plt = _plt()
    t0 = min(s["time"] for s in samples)
    by_proc: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_proc[s["process"]].append(s)
    fig, (cpu, mem) = plt.subplots(1, 2, figsize=(9, 2.8))
    for name, rows in sorted(by_proc.items()):
        rows.sort(key=lambda r: r["time"])
        kind = next((k for k in ("rss_mb", "heap_mb", "used_mb") if any(r.get(k) is not None for r in rows)), None)
        cpu.plot([r["time"] - t0 for r in rows if r.get("cpu_percent") is not None],
                 [r["cpu_percent"] for r in rows if r.get("cpu_percent") is not None], lw=1, label=name)
        if kind is not None:
            mem.plot([r["time"] - t0 for r in rows if r.get(kind) is not None],
                     [r[kind] for r in rows if r.get(kind) is not None], lw=1, label=name)
    cpu.set(xlabel="seconds since start", ylabel="% of one core", title="CPU per process")
    mem.set(xlabel="seconds since start", ylabel="MB", title="Memory per process (RSS; Go nodes via Prometheus: heap)")
    cpu.legend(fontsize=6, ncol=2)
    return _svg(fig)
