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
}


def _runs(name: str, since: float) -> list[dict]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return []
    runs = json.loads(path.read_text()).get("runs", [])
    return [r for r in runs if not r.get("reconstructed_from_log") and isinstance(r.get("time"), (int, float))
            and r["time"] >= since]


def _client_of(network: dict) -> tuple[str, str]:
    """(client, engine) of a run; runs written before the scripts recorded them (2026-11-30) were
    all on geth Clique, the only live client then."""
    return network.get("client", "geth"), network.get("engine", "clique")


def _figure(values: list[float]) -> dict | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"median": round(statistics.median(values), 2), "min": round(values[0], 2), "max": round(values[-1], 2),
            "n": len(values)}


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
                     "p99_s_at_80pct": _figure([s.get("p99_s") for s in at80])})
    return rows


def cti(since: float) -> list[dict]:
    rows = []
    by_client: dict[tuple, list[dict]] = {}
    for run in _runs("load_cti", since):
        by_client.setdefault(_client_of(run.get("network", {})), []).append(run)
    for (client, engine), runs in sorted(by_client.items()):
        best = [r.get("best") or {} for r in runs]
        rows.append({"figure": "CTI: included requests/s at the best passing step", "client": f"{client} {engine}",
                     "command": COMMANDS["load_cti"].format(client=client), "when": _when(runs),
                     "included_request_tps": _figure([b.get("included_request_tps") for b in best]),
                     "solver_finish_tps": _figure([b.get("solver_finish_tps") for b in best])})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="2026-11-01", help="only runs from this UTC day on")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    since = time.mktime(time.strptime(args.since, "%Y-%m-%d")) - time.timezone
    rows = startup(since) + transfers(since) + cti(since) + generator(since)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        figures = {k: v for k, v in row.items() if k not in ("figure", "client", "command", "when")}
        shown = "; ".join(f"{k} {v['median']} ({v['min']}-{v['max']}, n={v['n']})" for k, v in figures.items() if v)
        print(f"- {row['figure']} [{row['client']}]: {shown or 'no data'}\n  `{row['command']}`, {row['when']}")


if __name__ == "__main__":
    main()
