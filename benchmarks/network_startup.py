"""Startup benchmark: seconds from `up` to the first block agreed by every node, and peak
resident memory of all node processes, for the shipped 4- and 16-organization networks of both
live clients (GoQuorum QBFT, geth Clique), each started --repeat times (median and spread: the
machine is shared and noisy).

Toolchain builds are excluded (the binaries are built before timing). Writes
benchmarks/results/network_startup.json. Targets (2 cores): <= 15 s for 4 orgs, <= 60 s for
16 orgs, <= 8 GiB for 16 orgs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_sampler(network, stop: threading.Event, peak: dict) -> None:
    while not stop.is_set():
        total = 0
        for node in network.nodes:
            proc = network.state.read_pid(node.name)
            if proc:
                try:
                    total += psutil.Process(proc.pid).memory_info().rss
                except psutil.Error:
                    pass
        peak["bytes"] = max(peak.get("bytes", 0), total)
        stop.wait(0.5)


def measure(spec_path: Path, settle_seconds: float) -> dict:
    from testbed.network import Network
    from testbed.spec import load_network_spec

    spec = load_network_spec(spec_path)
    started = time.monotonic()
    said: list[str] = []

    def progress(message: str) -> None:
        said.append(message)
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    network = Network.create(spec, source=str(spec_path), ready_blocks=1, timeout=180, progress=progress)
    first_agreed = time.monotonic() - started
    stop, peak = threading.Event(), {}
    sampler = threading.Thread(target=peak_rss_sampler, args=(network, stop, peak), daemon=True)
    sampler.start()
    try:
        time.sleep(settle_seconds)
        agreement = network.agreement(full=True, settle=15)  # a Clique tip race is not a disagreement
    finally:
        stop.set()
        sampler.join()
        network.down(purge=True)
    return {
        "spec": spec_path.name, "organizations": len(spec.organizations), "nodes": len(network.nodes),
        "client": spec.client, "engine": spec.consensus.engine, "block_period_s": spec.consensus.block_period,
        "seconds_to_first_agreed_block": round(first_agreed, 2),
        "peak_rss_all_nodes_mib": round(peak.get("bytes", 0) / 2**20, 1),
        "agreed_after_settle": agreement.agreed, "height_after_settle": agreement.common_height,
        "start_up_rewinds": [m for m in said if "rewound" in m or "stalled" in m],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=["four-orgs.yaml", "sixteen-orgs.yaml", "four-orgs-clique.yaml",
                                                     "sixteen-orgs-clique.yaml"])
    parser.add_argument("--repeat", type=int, default=3, help="start each network this many times")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to keep the network running while sampling memory")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "network_startup.json")
    args = parser.parse_args()

    from testbed import toolchain

    for binary in ("geth", "goquorum"):
        toolchain.ensure(binary, log=print)
    os.environ["TESTBED_HOME"] = tempfile.mkdtemp(prefix="tb-bench-")
    results, summary = [], []
    for name in args.specs:
        path = Path(name) if Path(name).is_file() else ROOT / "scenarios" / "networks" / name
        runs = []
        for _ in range(args.repeat):
            result = measure(path, args.settle)
            print(json.dumps(result))
            runs.append(result)
        results += runs
        seconds = sorted(r["seconds_to_first_agreed_block"] for r in runs)
        rss = sorted(r["peak_rss_all_nodes_mib"] for r in runs)
        summary.append({"spec": path.name, "client": runs[0]["client"], "engine": runs[0]["engine"],
                        "organizations": runs[0]["organizations"], "runs": len(runs),
                        "seconds_median": statistics.median(seconds), "seconds_min": seconds[0], "seconds_max": seconds[-1],
                        "peak_rss_mib_median": statistics.median(rss), "all_agreed": all(r["agreed_after_settle"] for r in runs)})
    from _common import append_run

    append_run(args.out, "network_startup", {
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "loadavg_after": os.getloadavg()},
        "summary": summary, "results": results})  # every run is kept: one run is one sample


if __name__ == "__main__":
    main()
