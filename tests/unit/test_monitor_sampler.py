"""The agreement monitor against fake JSON-RPC nodes (a tiny HTTP server per node): incremental
hash fetching, reorgs with depth, divergence evidence, stalls, samples and verdict files."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed.runs import RunDir
from testbed.scenario.monitor import AgreementMonitor
from tests.unit.helpers_net import refused_url


class FakeNode:
    """A chain as a list of hashes; records how many block lookups it served."""

    def __init__(self, name: str, hashes: list[str], signers=("0xa", "0xb")) -> None:
        self.name, self.hashes, self.signers = name, list(hashes), list(signers)
        self.lookups = 0
        self.timestamp0 = 1_700_000_000
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = [node.answer(c) for c in body] if isinstance(body, list) else node.answer(body)
                reply = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def block(self, n: int) -> dict | None:
        if n >= len(self.hashes):
            return None
        return {"number": hex(n), "hash": self.hashes[n], "timestamp": hex(self.timestamp0 + n)}

    def answer(self, call: dict) -> dict:
        method, params = call["method"], call["params"]
        if method in ("eth_getBlockByNumber", "eth_getHeaderByNumber"):
            if params[0] == "latest":
                result = self.block(len(self.hashes) - 1)
            else:
                self.lookups += 1
                result = self.block(int(params[0], 16))
        elif method == "eth_blockNumber":
            result = hex(len(self.hashes) - 1)
        elif method == "net_peerCount":
            result = "0x3"
        elif method == "clique_getSigners":
            result = self.signers
        else:
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": f"the method {method} does not exist"}}
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chain(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"0x{prefix}{h:04d}" for h in range(start, start + n)]


@pytest.fixture
def nodes():
    made: list[FakeNode] = []

    def make(name, hashes, **kw):
        made.append(FakeNode(name, hashes, **kw))
        return made[-1]
    yield make
    for node in made:
        node.close()


def monitor_for(fakes, tmp_path, **kw) -> AgreementMonitor:
    return AgreementMonitor(lambda: {f.name: f.url for f in fakes}, validator_method="clique_getSigners",
                            admin=lambda: {f.name: f.url for f in fakes},
                            run=RunDir(tmp_path), recheck=4, **kw)


def test_agreement_and_incremental_fetch(nodes, tmp_path):
    a, b = nodes("a", chain("aa", 50)), nodes("b", chain("aa", 50))
    mon = monitor_for([a, b], tmp_path)
    mon.sample()
    first = a.lookups
    assert first >= 49  # the first sample reads every height once
    a.hashes += chain("aa", 2, 50)
    b.hashes += chain("aa", 2, 50)
    mon.sample()
    assert a.lookups - first <= 4 + 5 + 2  # recheck window + guess ahead, not the whole chain
    verdict = mon.stop()
    assert verdict.agreed and verdict.common_height == 51 and verdict.heights_checked == 52
    assert verdict.max_reorg_depth == 0 and verdict.validator_sets_agree
    assert (tmp_path / "monitor.json").is_file()
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["nodes"]["a"]["head"] == 49 and rows[0]["nodes"]["a"]["validators"] == 2


def test_reorg_detected_with_depth_and_evidence(nodes, tmp_path):
    a, b = nodes("a", chain("aa", 20)), nodes("b", chain("aa", 20))
    mon = monitor_for([a, b], tmp_path)
    mon.sample()
    b.hashes = chain("aa", 17) + chain("bb", 4, 17)  # heights 17..19 replaced, one more block on top
    a.hashes = list(b.hashes)
    mon.sample()
    verdict = mon.stop()
    assert verdict.agreed
    assert sorted(r["node"] for r in verdict.reorgs) == ["a", "b"]  # both nodes dropped their blocks
    reorg = next(r for r in verdict.reorgs if r["node"] == "b")
    assert (reorg["height"], reorg["depth"], reorg["old_head"]) == (17, 3, 19)
    assert reorg["old_hash"] == "0xaa0017" and reorg["new_hash"] == "0xbb0017"
    assert verdict.max_reorg_depth == 3


def test_reorg_deeper_than_the_recheck_window_is_found(nodes, tmp_path):
    a = nodes("a", chain("aa", 40))
    mon = monitor_for([a], tmp_path)
    mon.sample()
    a.hashes = chain("aa", 20) + chain("cc", 21, 20)  # 20 blocks replaced; the window is 4
    mon.sample()
    verdict = mon.stop()
    assert verdict.max_reorg_depth == 20 and verdict.reorgs[0]["height"] == 20


def test_final_divergence_names_node_height_and_both_hashes(nodes, tmp_path):
    a, b = nodes("a", chain("aa", 10)), nodes("b", chain("aa", 6) + chain("bb", 4, 6))
    mon = monitor_for([a, b], tmp_path)
    mon.sample()
    verdict = mon.stop(converge=0.5)  # the fork persists: it is the verdict
    assert not verdict.agreed
    first = verdict.divergences[0]
    assert (first["height"], first["node_a"], first["hash_a"], first["node_b"], first["hash_b"]) == \
        (6, "a", "0xaa0006", "b", "0xbb0006")
    assert verdict.transient_divergences >= 1


def test_validator_sets_that_differ(nodes, tmp_path):
    a, b = nodes("a", chain("aa", 5)), nodes("b", chain("aa", 5), signers=("0xa",))
    mon = monitor_for([a, b], tmp_path)
    mon.sample()
    assert not mon.stop().validator_sets_agree


def test_a_stopped_chain_is_a_stall(nodes, tmp_path):
    a = nodes("a", chain("aa", 5))
    mon = monitor_for([a], tmp_path, stall_after=0.2)
    mon.sample()
    import time

    time.sleep(0.3)
    mon.sample()
    verdict = mon.stop()
    assert verdict.stalls and verdict.stalls[0]["height"] == 4


def test_unreachable_node_is_not_fatal(nodes, tmp_path):
    a = nodes("a", chain("aa", 5))
    with refused_url() as gone:
        mon = AgreementMonitor(lambda: {"a": a.url, "gone": gone}, validator_method=None, run=RunDir(tmp_path))
        row = mon.sample()
    assert row["nodes"]["gone"]["head"] is None
    verdict = mon.stop()
    assert verdict.nodes_at_end == ["a"] and verdict.agreed


def test_background_thread_samples_until_stopped(nodes, tmp_path):
    a = nodes("a", chain("aa", 5))
    mon = monitor_for([a], tmp_path, interval=0.05).start()
    import time

    deadline = time.monotonic() + 30
    while mon.samples < 3 and time.monotonic() < deadline:  # however slow the machine: it keeps sampling
        time.sleep(0.05)
    verdict = mon.stop()
    assert verdict.samples >= 3 and not mon.errors
    after_stop = verdict.samples
    time.sleep(0.2)
    assert mon.samples == after_stop  # and stopped means stopped


def test_a_tip_fork_that_resolves_while_converging_is_a_reorg_not_a_divergence(nodes, tmp_path):
    a, b = nodes("a", chain("aa", 10)), nodes("b", chain("aa", 9) + ["0xfork"])
    mon = monitor_for([a, b], tmp_path, interval=0.1)
    mon.sample()

    def catch_up():
        import time

        time.sleep(0.3)
        b.hashes = chain("aa", 11)
    threading.Thread(target=catch_up).start()
    verdict = mon.stop(converge=5)
    assert verdict.agreed and verdict.common_height == 9
    assert [(r["node"], r["height"], r["depth"]) for r in verdict.reorgs] == [("b", 9, 1)]
