"""Medians and spreads of the benchmark runs kept in benchmarks/results/, per client and engine.

    .venv/bin/python benchmarks/summarize.py [--since YYYY-MM-DD] [--json]

Reads only what the benchmark scripts wrote themselves (runs marked `reconstructed_from_log` are
left out) and prints, for each figure, the command that measures it, the client/engine, the dates
and commits of the runs, the median and the min-max spread. The README quotes this output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = {
    "network_startup": ".venv/bin/python benchmarks/network_startup.py",
    "load_transfers": ".venv/bin/python benchmarks/load_transfers.py --client {client}",
    "load_cti": ".venv/bin/python benchmarks/load_cti.py --client {client}",
    "generator": ".venv/bin/python benchmarks/generator.py",
    "scale_wan": ".venv/bin/python benchmarks/scale_wan.py",
    "node_profile": ".venv/bin/python benchmarks/profile_nodes.py",
}


LABEL: str | None = None  # only runs with this label (--label)


def _runs(name: str, since: float) -> list[dict]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return []
    runs = json.loads(path.read_text()).get("runs", [])
    return [r for r in runs if not r.get("reconstructed_from_log") and isinstance(r.get("time"), (int, float))
            and r["time"] >= since and (LABEL is None or r.get("label") == LABEL)]


def _client_of(network: dict) -> tuple[str, str]:
    """(client, engine) of a run; runs written before the scripts recorded them (2026-11-30) were
    all on geth Clique, the only live client then."""
    return network.get("client", "geth"), network.get("engine", "clique")


def _figure(values: list[float]) -> dict | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"median": _round(statistics.median(values)), "min": _round(values[0]), "max": _round(values[-1]),
            "n": len(values)}


def _round(value: float) -> float:
    """Two decimals, or four significant digits below 1 (CPU seconds per block are ~0.01)."""
    return round(value, 2) if abs(value) >= 1 or value == 0 else float(f"{value:.4g}")


def _when(runs: list[dict]) -> str:
    days = sorted({time.strftime("%Y-%m-%d", time.gmtime(r["time"])) for r in runs})
    commits = sorted({r.get("commit") or "?" for r in runs})
    return f"{', '.join(days)} (commits {', '.join(commits)})"


def startup(since: float) -> list[dict]:
    rows = []
    runs = _runs("network_startup", since)
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        for result in run.get("results", []):
            key = (result["spec"], result.get("client"), result.get("engine"), result["organizations"])
            groups.setdefault(key, []).append(run | {"result": result})
    for (spec, client, engine, orgs), members in sorted(groups.items(), key=lambda kv: (kv[0][1] or "", kv[0][3])):
        rows.append({"figure": f"up to first block agreed, {orgs} orgs ({spec})", "client": f"{client} {engine}",
                     "command": COMMANDS["network_startup"], "when": _when(members),
                     "seconds": _figure([m["result"]["seconds_to_first_agreed_block"] for m in members]),
                     "peak_rss_mib": _figure([m["result"]["peak_rss_all_nodes_mib"] for m in members])})
    return rows


def transfers(since: float) -> list[dict]:
    rows = []
    by_client: dict[tuple, list[dict]] = {}
    for run in _runs("load_transfers", since):
        net = run.get("network", {})
        if run.get("locust_workers") or run.get("geth_flags"):
            continue  # a distributed-load or a flag experiment, not the shipped set-up
        by_client.setdefault(_client_of(net), []).append(run)
    for (client, engine), runs in sorted(by_client.items()):
        at80 = [r.get("at_80_percent", {}).get("summary", {}) for r in runs]
        rows.append({"figure": "value transfers: max sustainable included TPS (stepped, p95 <= limit)",
                     "client": f"{client} {engine}", "command": COMMANDS["load_transfers"].format(client=client),
                     "when": _when(runs),
                     "max_sustainable_included_tps": _figure([r["max_sustainable"]["included_tps"] for r in runs]),
                     "sustained_60s_included_tps": _figure([r.get("sustained_at_max", {}).get("summary", {})
                                                            .get("included_tps_steady") for r in runs]),
                     "p50_s_at_80pct": _figure([s.get("p50_s") for s in at80]),
                     "p95_s_at_80pct": _figure([s.get("p95_s") for s in at80]),
                     "p99_s_at_80pct": _figure([s.get("p99_s") for s in at80]),
                     # runs since 2026-12-01 record the block period under each phase's load
                     "block_interval_s_during_60s_hold": _figure([r.get("sustained_at_max", {}).get("blocks", {})
                                                                  .get("mean_interval_s") for r in runs]),
                     "longest_block_gap_s_during_60s_hold": _figure([r.get("sustained_at_max", {}).get("blocks", {})
                                                                     .get("longest_gap_s") for r in runs])})
    return rows


def _best_passing_step(run: dict) -> dict:
    """The step with the most requests + finishes among those that passed: every step before the
    one that stopped the run (all of them when the run reached its last step). The run's own
    "best" is taken over every step, the failing one included."""
    steps = run.get("steps") or []
    if not str(run.get("stop_reason", "")).startswith("reached the last step"):
        steps = steps[:-1]
    return max(steps, key=lambda s: s.get("request_plus_finish_tps") or 0, default={})


def cti(since: float) -> list[dict]:
    rows = []
    by_client: dict[tuple, list[dict]] = {}
    for run in _runs("load_cti", since):
        by_client.setdefault(_client_of(run.get("network", {})), []).append(run)
    for (client, engine), runs in sorted(by_client.items()):
        best = [_best_passing_step(r) for r in runs]
        rows.append({"figure": "CTI: included requests/s at the best passing step", "client": f"{client} {engine}",
                     "command": COMMANDS["load_cti"].format(client=client), "when": _when(runs),
                     "included_request_tps": _figure([b.get("included_request_tps") for b in best]),
                     "solver_finish_tps": _figure([b.get("solver_finish_tps") for b in best]),
                     "p95_s": _figure([(b.get("latency_s") or {}).get("p95_s") for b in best]),
                     # recorded since ad4b7e8 (the Solvers sampled apart from the nodes)
                     "solvers_cpu_percent": _figure([(b.get("cpu") or {}).get("solvers_percent") for b in best]),
                     "nodes_cpu_percent": _figure([(b.get("cpu") or {}).get("nodes_percent") for b in best])})
    return rows


def generator(since: float) -> list[dict]:
    runs = [r for r in _runs("generator", since) if r.get("label") == "baseline"]
    if not runs:
        return []
    return [{"figure": "load generator alone against a stub endpoint (one process)", "client": "no node",
             "command": COMMANDS["generator"], "when": _when(runs),
             "max_offered_tps": _figure([r.get("max_offered_tps") for r in runs]),
             "sign_transfers_per_s": _figure([r.get("sign_transfers_per_s") for r in runs]),
             "cpu_percent_at_max": _figure([max((s["generator_cpu_percent"] for s in r["steps"]
                                                 if s["offered_tps"] == r.get("max_offered_tps")), default=None)
                                            for r in runs])}]


def scale_wan(since: float) -> list[dict]:
    """Per size: the idle and loaded block interval, included tx/s, p95 and consensus CPU per block."""
    by_size: dict[tuple[int, float], list[dict]] = {}
    for run in _runs("scale_wan", since):
        for size in run.get("sizes", []):
            if "error" not in size and size.get("load"):
                key = (size["orgs"], size["load"]["target_tps"])
                by_size.setdefault(key, []).append(size | {"time": run["time"], "commit": run.get("commit")})
    rows = []
    for (orgs, rate), sizes in sorted(by_size.items()):
        rtt = sorted({tuple(s["one_way_delay_ms"][i] for i in (0, -1)) for s in sizes})
        rows.append({"figure": f"{orgs} orgs on netns, one-way delays {rtt} ms, 1 s QBFT blocks, {rate:g} tx/s offered",
                     "client": "goquorum qbft", "command": COMMANDS["scale_wan"], "when": _when(sizes),
                     "idle_block_interval_s": _figure([s["idle"]["mean_interval_s"] for s in sizes]),
                     "node_cpu_s_per_block_idle": _figure([s["idle"]["node_cpu_s_per_block"] for s in sizes]),
                     "included_tps_under_load": _figure([s["load"]["included_tps_steady"] for s in sizes]),
                     "block_interval_under_load_s": _figure([None if s["load"].get("stalled") else s["load"]["mean_interval_s"]
                                                             for s in sizes]),
                     "longest_block_gap_under_load_s": _figure([s["load"].get("longest_gap_s") for s in sizes]),
                     "chain_stalled": _figure([1.0 if _stalled(s["load"]) else 0.0 for s in sizes]),
                     "p95_s_under_load": _figure([s["load"]["p95_s"] for s in sizes]),
                     "agreed": _figure([1.0 if s.get("agreement", {}).get("agreed") else 0.0 for s in sizes])})
    return rows


def _stalled(load: dict) -> bool:
    """The chain stood still for more than 5 s during the load (or the run says it did)."""
    return bool(load.get("stalled")) or (load.get("longest_gap_s") or 0) > 5


def consensus_fit(rows: list[dict]) -> dict | None:
    """Least-squares fit of the idle consensus CPU per block (all nodes together) as a*N + b*N^2
    over the measured sizes, from scale_wan's medians."""
    by_orgs: dict[int, list[float]] = {}
    for r in rows:  # idle figures do not depend on the load rate: pooled per size
        if r.get("node_cpu_s_per_block_idle"):
            by_orgs.setdefault(int(r["figure"].split()[0]), []).append(r["node_cpu_s_per_block_idle"]["median"])
    points = [(n, statistics.median(v)) for n, v in sorted(by_orgs.items())]
    if len(points) < 2:
        return None
    s2 = sum(n**2 for n, _ in points)
    s3 = sum(n**3 for n, _ in points)
    s4 = sum(n**4 for n, _ in points)
    t1 = sum(n * c for n, c in points)
    t2 = sum(n**2 * c for n, c in points)
    det = s2 * s4 - s3 * s3
    if det == 0:
        return None
    a, b = (t1 * s4 - t2 * s3) / det, (s2 * t2 - s3 * t1) / det
    return {"cpu_s_per_block": "a*N + b*N^2", "a": round(a, 5), "b": round(b, 6), "points": points}


def node_profile(since: float) -> list[dict]:
    """The share of node CPU per activity and per kind of work (mean over the nodes of a run,
    median over runs)."""
    runs = [r for r in _runs("node_profile", since) if r.get("nodes") and r.get("label") == "baseline"]
    rows = []
    for key, what in (("activity_percent", "activity"), ("work_percent", "work")):
        per_run: list[dict[str, float]] = []
        for run in runs:
            nodes = [n[key] for n in run["nodes"].values() if key in n]
            if nodes:
                names = {k for n in nodes for k in n}
                per_run.append({k: statistics.mean(n.get(k, 0.0) for n in nodes) for k in names})
        if not per_run:
            continue
        names = sorted({k for r in per_run for k in r}, key=lambda k: -statistics.median(r.get(k, 0.0) for r in per_run))
        rates = sorted({r["rate"] for r in runs})
        row = {"figure": f"GoQuorum node CPU by {what} (% of samples) at {rates} tx/s", "client": "goquorum qbft",
               "command": COMMANDS["node_profile"], "when": _when(runs)}
        row.update({f"{k} %": _figure([r.get(k, 0.0) for r in per_run]) for k in names})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="2026-11-01", help="only runs from this UTC day on")
    parser.add_argument("--label", help="only runs with this label (e.g. the runs after a change)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    global LABEL
    LABEL = args.label
    since = time.mktime(time.strptime(args.since, "%Y-%m-%d")) - time.timezone
    scale = scale_wan(since)
    rows = startup(since) + transfers(since) + cti(since) + generator(since) + scale + node_profile(since)
    fit = consensus_fit(scale)
    if args.json:
        print(json.dumps({"figures": rows, "consensus_fit": fit}, indent=2))
        return
    for row in rows:
        figures = {k: v for k, v in row.items() if k not in ("figure", "client", "command", "when")}
        shown = "; ".join(f"{k} {v['median']} ({v['min']}-{v['max']}, n={v['n']})" for k, v in figures.items() if v)
        print(f"- {row['figure']} [{row['client']}]: {shown or 'no data'}\n  `{row['command']}`, {row['when']}")
    if fit:
        print(f"- consensus CPU per block, all nodes (idle, netns): {fit['a']}*N + {fit['b']}*N^2 s "
              f"(least squares over {fit['points']})")


if __name__ == "__main__":
    main()
