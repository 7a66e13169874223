"""The one JSON-RPC batch of the harness (testbed.chain.rpc): RpcClient over HTTP and
ProviderBatch over a web3 provider give the same results for the same node answers: in the
order of the calls, at most BATCH_SIZE calls per request, a failed call as an RpcError that
keeps the node's code and revert data."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from eth_abi import encode

from testbed.chain import rpc
from testbed.chain.rpc import ProviderBatch, RpcClient, RpcError
from testbed.cti.errors import as_revert

REVERT = {"code": 3, "message": "execution reverted", "data": "0x08c379a0" + encode(["string"], ["nope"]).hex()}


def answer(call: dict) -> dict:
    """What the stub node says to one call: eth_call with data 0xbad reverts, the rest echo."""
    if call["method"] == "eth_call" and call["params"][0] == "0xbad":
        return {"jsonrpc": "2.0", "id": call["id"], "error": REVERT}
    return {"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]}


@pytest.fixture
def node():
    requests_seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if isinstance(payload, list):
                requests_seen.append(len(payload))
                body = [answer(c) for c in payload]
                random.Random(len(payload)).shuffle(body)  # a node may answer a batch in any order
            else:
                body = answer(payload)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", requests=requests_seen)
    server.shutdown()
    server.server_close()


CALLS = [("eth_call", [f"0x{i:02x}"]) for i in range(7)] + [("eth_call", ["0xbad"])]


def test_http_batch_keeps_call_order_and_splits_into_batch_size_requests(node, monkeypatch):
    monkeypatch.setattr(rpc, "BATCH_SIZE", 3)
    with RpcClient(node.url) as client:
        results = client.batch(CALLS, allow_errors=True)
    assert node.requests == [3, 3, 2]
    assert results[:7] == [f"0x{i:02x}" for i in range(7)]
    assert isinstance(results[7], RpcError) and results[7].code == 3 and results[7].data == REVERT["data"]


def test_a_failed_call_raises_without_allow_errors_and_decodes_as_a_revert(node):
    with RpcClient(node.url) as client:
        with pytest.raises(RpcError, match="execution reverted") as failed:
            client.batch(CALLS)
        assert client.call("eth_call", "0x05") == "0x05"
        with pytest.raises(RpcError):
            client.call("eth_call", "0xbad")
    revert = as_revert("tasks.accept", failed.value)
    assert revert is not None and revert.reason == "nope"


def test_provider_batch_gives_the_same_results_as_the_http_client(node, monkeypatch):
    monkeypatch.setattr(rpc, "BATCH_SIZE", 5)
    sizes = []

    def make_batch_request(chunk):  # web3's provider: answers in call order, ids already matched
        sizes.append(len(chunk))
        return [answer({"id": i, "method": m, "params": p}) for i, (m, p) in enumerate(chunk)]

    through_web3 = ProviderBatch(SimpleNamespace(provider=SimpleNamespace(make_batch_request=make_batch_request)))
    with RpcClient(node.url) as client:
        over_http = client.batch(CALLS, allow_errors=True)
    over_web3 = through_web3.batch(CALLS, allow_errors=True)
    assert sizes == [5, 3]
    assert over_web3[:7] == over_http[:7]
    assert (over_web3[7].code, over_web3[7].data) == (over_http[7].code, over_http[7].data)


def test_provider_batch_refuses_an_answer_that_is_not_one_reply_per_call():
    broken = ProviderBatch(SimpleNamespace(provider=SimpleNamespace(
        make_batch_request=lambda chunk: {"error": {"message": "batch too large"}})))
    with pytest.raises(RpcError, match="unusable JSON-RPC batch answer"):
        broken.batch(CALLS)
