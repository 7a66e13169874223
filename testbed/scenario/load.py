"""Load phases of a scenario: a plain rate of client-signed transfers (testbed.chain.txs), or
(`engine: locust`) the Locust layer, run as `python -m testbed.load` on the running network,
whose raw records (txs.jsonl, blocks.jsonl) are read back into the same LoadResult.

The plain driver signs EIP-1559 transfers from every sending organization's genesis
accounts, sends them in JSON-RPC batches to the organization's own node (or, while that
node is down or paused, to any live node: a client that talks to one node only is a known
gap), reads inclusion from blocks, re-broadcasts the raw bytes of anything still pending
while draining (same hash: idempotent), and finally confirms every inclusion from receipts
on a live node, so a transaction dropped by a reorg is counted lost, not included.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.chain.rpc import RpcClient, RpcError
from testbed.chain.inclusion import InclusionTracker
from testbed.chain.txs import TX_FIELDS, TxSigner, TxRecord, is_already_known, nonce_of
from testbed.clients import fee_rules
from testbed.errors import ChainError, TestbedError
from testbed.metrics import included_tps, latency_summary
from testbed.runs import read_jsonl

LOCUST_ENTRY = "testbed.load"  # `python -m testbed.load '{"command": "load", ...}'`: Locust in its own process


@dataclass
class LoadResult:
    phase: int
    records: list[TxRecord] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)  # the tracker's (testbed.chain.inclusion)
    resent: int = 0
    started: float = 0.0
    finished: float = 0.0

    def figures(self) -> dict:
        included = [r for r in self.records if r.status == "included"]
        rejected = [r for r in self.records if r.status == "rejected"]
        lost = [r for r in self.records if r.status not in ("included", "rejected")]
        ours: dict[int, int] = {}
        for r in included:
            ours[r.included_block] = ours.get(r.included_block, 0) + 1
        stamps = {b["number"]: b["timestamp"] for b in self.blocks}
        busy = [(stamps[n], c) for n, c in ours.items() if n in stamps]
        return {
            "phase": self.phase, "sent": len(self.records), "included": len(included), "rejected": len(rejected),
            "lost": len(lost), "resent": self.resent, "tps": included_tps(busy),
            "latency": latency_summary([r.latency for r in included if r.latency is not None]),
            "seconds": round(self.finished - self.started, 3),
            "first_rejection": rejected[0].error if rejected else None,
            "lost_examples": [r.hash for r in lost[:5]],
        }


class _Sender:
    def __init__(self, org: str, node: str, url: str, signer: TxSigner, nonce: int, to: str) -> None:
        self.org, self.node, self.url, self.signer, self.nonce, self.to = org, node, url, signer, nonce, to


class _Watch:
    """The node the tracker reads blocks from; another live one when it goes down (a fault step)."""

    def __init__(self, load: "TransferLoad", node: str) -> None:
        self.load, self.node = load, node
        self.rpc = RpcClient(load._url(node), timeout=10)

    def poll(self, tracker: InclusionTracker) -> None:
        try:
            tracker.poll(self.rpc)
        except (RpcError, KeyError, TypeError):
            live = [n for n in self.load.alive() if n != self.node]
            if live:  # read blocks from another node, from where we were
                self.rpc.close()
                self.node = live[0]
                self.rpc = RpcClient(self.load._url(live[0]), timeout=10)


class TransferLoad:
    """A constant rate of signed transfers for `phase.duration` seconds, then a drain."""

    def __init__(self, net, phase, *, alive: Callable[[], list[str]], emit, index: int = 1, tick: float = 0.2,
                 stop: threading.Event | None = None) -> None:
        self.net, self.phase, self.alive, self.emit, self.index, self.tick = net, phase, alive, emit, index, tick
        self.stop = stop or threading.Event()  # set: send no more, do not drain (the run is ending early)
        self.raw: dict[str, str] = {}

    def _url(self, node: str) -> str:
        return self.net.node(node).rpc_url

    def _live_urls(self, prefer: str) -> list[str]:
        live = self.alive()
        order = ([prefer] if prefer in live else []) + [n for n in live if n != prefer]
        return [self._url(n) for n in order]

    def _senders(self) -> list[_Sender]:
        orgs = self.phase.orgs or [o.name for o in self.net.members]
        all_orgs = [o.name for o in self.net.members]
        senders: list[_Sender] = []
        fees = fee_rules(self.net.spec)
        for org in orgs:
            node = next(n.name for n in self.net.nodes if n.org == org)
            to = self.net.keys.accounts[all_orgs[(all_orgs.index(org) + 1) % len(all_orgs)]][0].address
            urls = self._live_urls(node)
            if not urls:
                raise ChainError("no live node to send load through")
            with RpcClient(urls[0], timeout=10) as rpc:
                for pair in self.net.keys.of(org).load:
                    signer = TxSigner(pair.private_key, chain_id=self.net.spec.chain_id, fees=fees)
                    senders.append(_Sender(org, node, self._url(node), signer, nonce_of(rpc, signer.address), to))
        return senders

    def _send(self, batch: list[tuple[_Sender, TxRecord, str]]) -> None:
        """Send one node's share; on no answer, the same batch goes to the next live node."""
        prefer = batch[0][0].node
        results: list | None = None
        for url in self._live_urls(prefer):
            with RpcClient(url, timeout=5) as rpc:
                try:
                    results = rpc.batch([("eth_sendRawTransaction", [raw]) for _, _, raw in batch], allow_errors=True)
                    node = next((n.name for n in self.net.nodes if n.rpc_url == url), url)
                    break
                except RpcError:
                    continue
        now = time.time()
        for (sender, record, _), result in zip(batch, results or [None] * len(batch)):
            record.submit_time = now
            if results is None:
                # no answer (down, or a timeout after the node took it): pending, not refused. The
                # nonce stays used; the drain resends the same bytes, and receipts decide in the end
                record.status, record.error = "submitted", "no node answered the submission"
            elif isinstance(result, RpcError) and not is_already_known(result):
                record.status, record.error = "rejected", str(result).split(": ", 2)[-1]
                sender.nonce = min(sender.nonce, record.nonce)  # reuse the nonce: no gap behind a refused tx
            else:
                record.status, record.node = "submitted", node

    def run(self) -> LoadResult:
        engine = self.phase.engine
        if engine == "locust":
            return self._run_locust()
        result = LoadResult(phase=self.index)
        senders = self._senders()
        watch = _Watch(self, self.alive()[0])
        tracker = InclusionTracker.from_head(watch.rpc)
        self.emit("load_started", phase=self.index, rate=self.phase.rate, duration=self.phase.duration,
                  senders=len(senders), engine=engine)
        result.started = start = time.time()
        cycle = itertools.cycle(senders)
        sent = 0
        try:
            while (elapsed := time.time() - start) < self.phase.duration and not self.stop.is_set():
                due = int(self.phase.rate * elapsed) + 1 - sent
                by_node: dict[str, list] = {}
                for _ in range(max(0, due)):
                    sender = next(cycle)
                    tx_hash, raw = sender.signer.sign(sender.nonce, sender.to)
                    record = TxRecord(hash=tx_hash, org=sender.org, node=sender.node, sender=sender.signer.address,
                                      nonce=sender.nonce)
                    sender.nonce += 1
                    self.raw[tx_hash] = raw
                    result.records.append(record)
                    by_node.setdefault(sender.node, []).append((sender, record, raw))
                    sent += 1
                for batch in by_node.values():
                    self._send(batch)
                    for _, record, _ in batch:
                        if record.status == "submitted":
                            tracker.submitted(record)
                watch.poll(tracker)
                time.sleep(max(0.0, self.tick - (time.time() - start - elapsed)))
            self.emit("load_sending_done", phase=self.index, sent=sent)
            self._drain(tracker, watch, result)
        finally:
            watch.rpc.close()
            result.finished = time.time()
            result.blocks = list(tracker.blocks)
        self._confirm(result)
        figures = result.figures()
        self.emit("load_finished", **{k: v for k, v in figures.items() if k != "lost_examples"})
        return result

    def _run_locust(self) -> LoadResult:
        """Hand the phase to the Locust layer (its own process: gevent patches first) and read its raw records."""
        import importlib.util

        if importlib.util.find_spec("testbed.load.bench") is None:
            raise TestbedError("load engine 'locust' needs the Locust load layer (testbed.load.bench), not in this tree",
                               hint="use 'engine: transfers' (the default)")
        request = {"command": "load", "network": self.net.name, "profile": f"constant:{self.phase.rate:g}:{self.phase.duration:g}",
                   "options": {"max_rate": self.phase.rate, "drain_timeout": self.phase.drain,
                               "workers": self.phase.workers, "worker_hosts": self.phase.worker_hosts}}
        env = {**os.environ, "TESTBED_HOME": str(self.net.state.root.parent)}
        result = LoadResult(phase=self.index, started=time.time())
        self.emit("load_started", phase=self.index, rate=self.phase.rate, duration=self.phase.duration, engine="locust",
                  workers=self.phase.workers)
        proc = subprocess.Popen([sys.executable, "-m", LOCUST_ENTRY, json.dumps(request)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        tail: list[str] = []
        for line in proc.stderr:
            tail = (tail + [line.rstrip()])[-5:]
            self.emit("load_progress", phase=self.index, line=line.rstrip()[:300])
        out = proc.stdout.read().strip().splitlines()
        proc.wait()
        result.finished = time.time()
        if proc.returncode not in (0, 1) or not out:
            raise TestbedError(f"the Locust load phase failed (exit {proc.returncode}): {tail[-1] if tail else 'no output'}")
        run_dir = Path(json.loads(out[-1])["run_dir"])
        for row in read_jsonl(run_dir / "txs.jsonl"):
            result.records.append(TxRecord(**{k: v for k, v in row.items() if k in TX_FIELDS}))
        result.blocks += read_jsonl(run_dir / "blocks.jsonl")
        self._confirm(result)  # the final chain decides, also for the Locust layer's records
        figures = result.figures()
        self.emit("load_finished", run_dir=str(run_dir), **{k: v for k, v in figures.items() if k != "lost_examples"})
        return result

    def _drain(self, tracker: InclusionTracker, watch: "_Watch", result: LoadResult) -> None:
        deadline = time.monotonic() + self.phase.drain
        last_resend = time.monotonic()
        while tracker.pending and time.monotonic() < deadline and not self.stop.is_set():
            watch.poll(tracker)
            if tracker.pending and time.monotonic() - last_resend > 5:
                result.resent += self._rebroadcast(list(tracker.pending))
                last_resend = time.monotonic()
            time.sleep(0.3)
        watch.poll(tracker)

    def _rebroadcast(self, hashes: list[str]) -> int:
        """Send pending transactions' raw bytes again to every live node (same hash; idempotent)."""
        for name in self.alive():
            with RpcClient(self._url(name), timeout=5) as rpc:
                try:
                    for start in range(0, len(hashes), 200):
                        rpc.batch([("eth_sendRawTransaction", [self.raw[h]]) for h in hashes[start:start + 200]],
                                  allow_errors=True)
                except RpcError:
                    pass
        return len(hashes)

    def _confirm(self, result: LoadResult) -> None:
        """Receipts on a live node decide: included where the final chain says, else lost."""
        live = self.alive()
        if not live:
            return
        with RpcClient(self._url(live[0]), timeout=30) as rpc:
            try:
                watched = [r for r in result.records if r.status != "rejected"]
                for start in range(0, len(watched), 300):
                    chunk = watched[start:start + 300]
                    receipts = rpc.batch([("eth_getTransactionReceipt", [r.hash]) for r in chunk], allow_errors=True)
                    for record, receipt in zip(chunk, receipts):
                        if isinstance(receipt, dict) and receipt.get("blockNumber"):
                            block = int(receipt["blockNumber"], 16)
                            if record.status != "included" or record.included_block != block:
                                record.included_block = block
                                if record.included_time is None:  # seen only now: latency unknown, not guessed
                                    record.error = "included; found by receipt after the drain"
                            record.status = "included"
                        elif record.status == "included":
                            record.status, record.error = "dropped", "included in a block the chain later dropped"
            except RpcError:
                pass
