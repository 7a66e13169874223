"""Benchmark: CTI request (consumers) and finish (org Solvers) contract calls on four-orgs, nodes + load on one host.

    .venv/bin/python benchmarks/load_cti.py [--rates 100,200,300,400,500,600] [--step-seconds 20] [--drain-seconds 60]
        [--out benchmarks/results/load_cti.json]

Brings up four-orgs (1 s Clique blocks, 100M gas), deploys the CTI contracts (which starts
the four org Solvers), then steps the offered rate of CTI consumer users (`--users cti`:
each batch of n is one buy of n-1 tokens and n-1 requests, pre-signed) with the bench logic
of `testbed bench`. Per step, from the run directory and the chain:
- included TPS of requests (status included, not reverted) and of buys, by block timestamp;
- the Solvers' accept and finish calls per second: TaskChanged(Accepted/Finished) logs in
  the step's blocks (the Solvers pick tasks up as they appear, so they trail by a few blocks);
- after the last step: how long the Solvers needed to settle every requested task (`drain`,
  up to --drain-seconds), the backlog's measure of whether they keep up;
- p50/p95 submit->inclusion latency of the load's calls, block gas used, CPU.
Every run is appended to the results file with the load average before and after.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from _common import (append_run, bench_parser, four_orgs_spec, host_and_network, progress, stall_watchdog,  # noqa: E402
                     tear_down, temporary_home)

STATES = {1: "pending", 2: "accepted", 3: "finished", 6: "rejected"}


def task_events(net, deployment, first_block: int, last_block: int) -> list[tuple[int, int]]:
    """(block number, state) of every TaskChanged log in the range."""
    from web3 import Web3

    from testbed.chain.rpc import RpcClient

    topic = "0x" + Web3.keccak(text="TaskChanged(uint256,uint256,uint32,uint8)").hex().removeprefix("0x")
    rpc = RpcClient(net.nodes[0].rpc_url, timeout=60)
    out = []
    try:
        for start in range(first_block, last_block + 1, 200):
            logs = rpc.call("eth_getLogs", {"fromBlock": hex(start), "toBlock": hex(min(last_block, start + 199)),
                                            "address": deployment.address("Tasks"), "topics": [topic]})
            out += [(int(log["blockNumber"], 16), int(log["data"][-64:], 16)) for log in logs]
    finally:
        rpc.close()
    return out


def step_cti(step: dict, txs: list[dict], blocks: list[dict], events: list[tuple[int, int]]) -> dict:
    start, end = step["start"], step["end"]
    window = end - start
    in_window = {b["number"]: b for b in blocks if start <= b["timestamp"] < end}
    calls = Counter(t["kind"] for t in txs if t["status"] == "included" and t["included_block"] in in_window)
    reverted = Counter(t["kind"] for t in txs if t["status"] == "reverted" and start <= t["submit_time"] < end)
    tasks = Counter(STATES.get(state, str(state)) for number, state in events if number in in_window)
    gas = [b["gas_used"] for b in in_window.values()]
    return {
        "target_tps": step["target_tps"], "offered_tps": step["offered_tps"],
        "included_request_tps": round(calls["cti_request"] / window, 1),
        "included_buy_tps": round(calls["cti_buy"] / window, 1),
        "solver_finish_tps": round(tasks["finished"] / window, 1),
        "request_plus_finish_tps": round((calls["cti_request"] + tasks["finished"]) / window, 1),
        "all_txs_in_blocks_tps": round(sum(b["tx_count"] for b in in_window.values()) / window, 1),
        "reverted_load_calls": dict(reverted),
        "included_ratio_at_step": step["included_ratio"],
        "latency_s": step["latency"], "mean_block_gas_used": round(sum(gas) / len(gas)) if gas else None,
        "cpu": step["cpu"],
    }


def drain(net, deployment, first_block: int, limit_s: float) -> tuple[list[tuple[int, int]], dict]:
    """Wait until every requested task is settled (finished or rejected) or `limit_s` passed:
    the TaskChanged logs from `first_block`, and how long the Solvers needed after the load."""
    from testbed.chain.rpc import RpcClient

    rpc = RpcClient(net.nodes[0].rpc_url)
    start = moved = time.monotonic()
    last_head = -1
    try:
        while True:
            head = int(rpc.call("eth_blockNumber"), 16)
            if head != last_head:
                last_head, moved = head, time.monotonic()
            events = task_events(net, deployment, first_block, head)
            states = Counter(state for _, state in events)
            unsettled = states[1] - states[3] - states[6]
            waited = time.monotonic() - start
            if unsettled <= 0 or waited >= limit_s:
                # a chain that stopped growing (a Clique fork both halves of which wait for each other)
                # leaves the Solvers nothing to do: say so rather than blame them
                still = time.monotonic() - moved
                return events, {"seconds": round(waited, 1), "unsettled": max(unsettled, 0), "limit_s": limit_s,
                                "head": head, "chain_stalled_s": round(still, 1) if still >= 10 else 0}
            time.sleep(2)
    finally:
        rpc.close()


def keep_solver_state(net) -> str:
    """Copy every Solver's log and journal out of the run's home (which tear_down removes)."""
    import shutil
    import tempfile
    from pathlib import Path

    kept = Path(tempfile.mkdtemp(prefix="bench-cti-unsettled-"))
    for org_dir in (net.state.root / "solvers").iterdir():
        shutil.copytree(org_dir, kept / org_dir.name, ignore=shutil.ignore_patterns("outbox*"))
    return str(kept)


def main() -> None:
    parser = bench_parser(__doc__, rates="100,200,300,400,500,600", port_base=26700, results="load_cti.json")
    parser.add_argument("--drain-seconds", type=float, default=60,
                        help="after the load, wait up to this long for the Solvers to settle every requested task")
    args = parser.parse_args()

    home = temporary_home("bench-load-cti-")

    from solver.manage import stop_solvers
    from testbed.contracts import deploy_to_network
    from testbed.load.runner import BenchLimits, LoadOptions, bench
    from testbed.network import Network
    from testbed.report.data import RunData
    from testbed.runs import RunDir

    spec = four_orgs_spec("bench-load-cti", args.port_base, args.client)
    net = Network.create(spec, progress=progress)
    result: dict = {"label": args.label, **host_and_network(spec),
                    "options": {"users": "cti", "batch": args.batch, "per_user_rate": args.per_user_rate,
                                "step_seconds": args.step_seconds}}
    guard = stall_watchdog(net, args)
    try:
        deployment = deploy_to_network(net, progress=progress)
        run = RunDir.create(net.state.runs_dir, "bench-cti")
        found = bench(net, run, [float(r) for r in args.rates.split(",")],
                      LoadOptions(batch_size=args.batch, per_user_rate=args.per_user_rate, users="cti"),
                      BenchLimits(p95_limit_s=args.p95_limit, step_seconds=args.step_seconds), progress)
        rundata = RunData.load(run.root)
        cti = json.loads((run.root / "cti.json").read_text())
        numbers = [b["number"] for b in rundata.blocks]
        events, result["drain"] = drain(net, deployment, min(numbers), args.drain_seconds) if numbers else ([], {})
        if result["drain"].get("unsettled"):  # keep the Solvers' logs and journals for a post-mortem
            result["drain"]["kept"] = keep_solver_state(net)
        progress(f"Solver backlog after the load: {result['drain']}")
        result["gas_per_call"] = cti["gas"]
        result["steps"] = [step_cti(s, rundata.txs, rundata.blocks, events) for s in found["steps"]]
        for s in result["steps"]:
            progress(f"step {s['target_tps']}: requests {s['included_request_tps']}/s, finishes {s['solver_finish_tps']}/s, "
                     f"request+finish {s['request_plus_finish_tps']}/s, p95 {s['latency_s']['p95_s']}")
        result["stop_reason"] = found["stop_reason"]
        totals = Counter(STATES.get(state, str(state)) for _, state in events)
        result["tasks_total"] = dict(totals)
        result["load_statuses"] = {f"{k}:{s}": n for (k, s), n in Counter((t["kind"], t["status"]) for t in rundata.txs).items()}
        result["best"] = max(result["steps"], key=lambda s: s["request_plus_finish_tps"], default=None)
        agreement = net.agreement(full=True)
        result["agreement"] = {"agreed": agreement.agreed, "summary": agreement.summary()}
    finally:
        result["interventions"] = guard.stop()
        tear_down(net, home, result, before_down=stop_solvers)
    append_run(args.out, "load_cti", result, commit_default="unknown", json_default=str)


if __name__ == "__main__":
    main()
