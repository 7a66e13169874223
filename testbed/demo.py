"""The main job: bring up the default network, run a load of client-signed transfers from
every organization through its own node, check agreement on blocks and state, write the
run directory and report, and tear the network down.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.chain.rpc import RpcClient
from testbed.chain.txs import InclusionTracker, SignedTx, nonce_of, send_batch, sign_transfers
from testbed.consensus import find_state_mismatches
from testbed.metrics import block_intervals, included_tps, latency_summary
from testbed.network import Network
from testbed.runs import RunDir
from testbed.spec import load_network_spec

Progress = Callable[[str], None]


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class DemoResult:
    network: str
    run_dir: Path
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.json"


def _org_load(net: Network, org: str, per_account: int) -> list[SignedTx]:
    """Pre-sign `per_account` transfers from each of the org's accounts to the next org's first account."""
    orgs = [o.name for o in net.spec.organizations]
    target_org = orgs[(orgs.index(org) + 1) % len(orgs)]
    to = net.keys.accounts[target_org][0].address
    node = next(n for n in net.nodes if n.org == org)
    rpc = RpcClient(node.rpc_url)
    signed: list[SignedTx] = []
    try:
        for pair in net.keys.accounts[org]:
            start = nonce_of(rpc, pair.address)
            signed += sign_transfers(pair.private_key, chain_id=net.spec.chain_id, start_nonce=start, count=per_account,
                                     to=to, org=org, node=node.name)
    finally:
        rpc.close()
    return signed


def run_transfer_load(net: Network, run: RunDir, per_account: int, progress: Progress, timeout: float = 120) -> list[Check]:
    """Every org sends signed transfers through its own node; inclusion is read from blocks."""
    watch_node = net.nodes[0]
    tracker_rpc = RpcClient(watch_node.rpc_url, timeout=10)
    start_block = int(tracker_rpc.call("eth_blockNumber"), 16) + 1
    tracker = InclusionTracker(tracker_rpc, start_block)
    orgs = [o.name for o in net.spec.organizations]
    with ThreadPoolExecutor(max_workers=len(orgs)) as pool:
        batches = dict(zip(orgs, pool.map(lambda o: _org_load(net, o, per_account), orgs)))
    total = sum(len(b) for b in batches.values())
    progress(f"load: {total} pre-signed transfers from {sum(len(net.keys.accounts[o]) for o in orgs)} accounts in {len(orgs)} organizations")
    run.event("load_started", transactions=total)
    started = time.time()

    def send(org: str) -> None:
        node = next(n for n in net.nodes if n.org == org)
        rpc = RpcClient(node.rpc_url, timeout=30)
        try:
            send_batch(rpc, batches[org])
        finally:
            rpc.close()

    with ThreadPoolExecutor(max_workers=len(orgs)) as pool:
        list(pool.map(send, orgs))
    records = [tx.record for batch in batches.values() for tx in batch]
    tracker.watch(records)
    all_included = tracker.wait_all(timeout)
    tracker.poll()
    finished = time.time()
    run.event("load_finished", seconds=round(finished - started, 3))
    tracker_rpc.close()

    rejected = [r for r in records if r.status == "rejected"]
    lost = [r for r in records if r.status == "submitted"]
    included = [r for r in records if r.status == "included"]
    run.write_jsonl("txs.jsonl", (r.to_json() for r in records))
    run.write_jsonl("blocks.jsonl", (vars(b) for b in tracker.blocks))
    busy = [(b.timestamp, b.tx_count) for b in tracker.blocks if b.tx_count]
    figures = {
        "submitted": total - len(rejected), "rejected": len(rejected), "included": len(included), "lost": len(lost),
        "submit_to_last_inclusion_s": round(max((r.included_time for r in included), default=started) - started, 3),
        "included_tps_from_blocks": included_tps(busy),
        "latency": latency_summary([r.latency for r in included if r.latency is not None]),
        "block_interval_s": latency_summary([float(i) for i in block_intervals([b.timestamp for b in tracker.blocks])]),
        "blocks": len(tracker.blocks),
    }
    run.write_json("load.json", figures)
    progress(f"load: {len(included)}/{total} included, {figures['included_tps_from_blocks'] or 0:.0f} TPS from blocks, "
             f"p95 latency {figures['latency']['p95_s'] or 0:.2f}s")
    detail = f"{len(included)} of {total} included"
    if rejected:
        detail += f"; {len(rejected)} rejected (first: {rejected[0].error})"
    if lost:
        detail += f"; {len(lost)} not included after {timeout:.0f}s"
    return [Check("no lost transaction", all_included and not rejected, detail)], figures


def state_agreement(net: Network, addresses: list[str]) -> Check:
    """Every node returns the same balances at the same block."""
    common = net.agreement().common_height
    if common is None:
        return Check("same state on every node", False, "no node answered")
    values: dict[str, dict[str, object]] = {}
    for node in net.nodes:
        rpc = RpcClient(node.rpc_url)
        try:
            answers = rpc.batch([("eth_getBalance", [a, hex(common)]) for a in addresses], allow_errors=True)
            values[node.name] = {f"balance {a}": (str(v) if not isinstance(v, str) else v) for a, v in zip(addresses, answers)}
        finally:
            rpc.close()
    mismatches = find_state_mismatches(values)
    if mismatches:
        return Check("same state on every node", False, f"at block {common}: {mismatches[0]}")
    return Check("same state on every node", True, f"{len(addresses)} balances identical on {len(values)} nodes at block {common}")


def run_demo(spec_path: Path, *, progress: Progress, transfers_per_account: int = 50, keep: bool = False) -> DemoResult:
    spec = load_network_spec(spec_path)
    started = time.monotonic()
    net = Network.create(spec, source=str(spec_path), progress=progress)
    up_seconds = time.monotonic() - started
    run = RunDir.create(net.state.runs_dir, "demo")
    result = DemoResult(network=net.name, run_dir=run.root)
    try:
        run.write_json("spec.json", spec.model_dump())
        run.event("network_up", seconds=round(up_seconds, 3))
        checks, load_figures = run_transfer_load(net, run, transfers_per_account, progress)
        result.checks += checks
        agreement = net.agreement(full=True)
        result.checks.append(Check("all nodes agree on every block", agreement.agreed, agreement.summary()))
        result.checks.append(state_agreement(net, net.keys.funded_addresses()))
        status = net.status()
        live = all(n.process_alive and n.snapshot.peers == len(net.nodes) - 1 for n in status.nodes)
        result.checks.append(Check("every node alive and fully peered", live,
                                   ", ".join(f"{n.plan.name}:{n.snapshot.peers}" for n in status.nodes)))
        result.figures = {"up_seconds": round(up_seconds, 2), "load": load_figures, "status": status.to_json()}
        run.write_json("report.json", {
            "run": run.id, "network": net.name, "verdict": "passed" if result.passed else "failed",
            "checks": [vars(c) for c in result.checks], "figures": result.figures,
        })
        run.set_status("passed" if result.passed else "failed")
        from testbed.report import render  # the HTML report and summary.json, from the run dir alone

        html_path, _ = render(run.root)
        progress(f"report: {html_path}")
    except BaseException as exc:
        run.set_status("error", error=str(exc))
        raise
    finally:
        if not keep:
            progress(f"tearing down {net.name!r}")
            net.down()
    return result


def default_demo_spec() -> Path:
    return Path(__file__).resolve().parent.parent / "scenarios" / "networks" / "four-orgs.yaml"
