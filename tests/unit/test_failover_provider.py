"""FailoverHTTPProvider: an unreachable node is replaced by the org's next one; an answer is never retried."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from web3 import Web3

from testbed.chain.failover import FailoverHTTPProvider
from testbed.cti.deploy import connect
from tests.unit.helpers_net import refused_url


class Node(BaseHTTPRequestHandler):
    """Answers eth_chainId with 1337 and anything else with a JSON-RPC error; counts calls."""

    calls: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answers = [self._answer(r) for r in body] if isinstance(body, list) else self._answer(body)
        data = json.dumps(answers).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, request):
        Node.calls.append(request["method"])
        if request["method"] == "eth_chainId":
            return {"jsonrpc": "2.0", "id": request["id"], "result": "0x539"}
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "method not found"}}

    def log_message(self, *_):
        pass


@pytest.fixture
def live_url():
    Node.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()




@pytest.fixture
def dead_url():
    with refused_url() as url:
        yield url


def test_an_unreachable_node_is_replaced_by_the_next_and_that_one_stays(live_url, dead_url):
    w3 = connect([dead_url, live_url], timeout=5)
    assert w3.eth.chain_id == 1337
    provider = w3.provider
    assert isinstance(provider, FailoverHTTPProvider) and provider.current == 1 and provider.endpoint_uri == live_url
    answers = provider.make_batch_request([("eth_chainId", []), ("eth_chainId", [])])
    assert [a["result"] for a in answers] == ["0x539", "0x539"] and provider.current == 1


def test_an_answer_from_a_reachable_node_is_not_retried_elsewhere(live_url, dead_url):
    w3 = connect([live_url, dead_url], timeout=5)
    with pytest.raises(Exception, match="method not found"):
        w3.eth.get_block_number()
    assert Node.calls == ["eth_blockNumber"] and w3.provider.current == 0


def test_every_node_unreachable_raises_the_connection_error(dead_url):
    with refused_url() as other:
        w3 = connect([dead_url, other], timeout=5)
        with pytest.raises(requests.ConnectionError):
            w3.eth.chain_id


def test_one_url_is_a_plain_provider_with_web3s_own_retries(live_url):
    assert type(connect(live_url).provider) is Web3.HTTPProvider
    single = FailoverHTTPProvider([live_url])
    assert single.exception_retry_configuration is not None  # no other node to fail over to
    with pytest.raises(ValueError):
        FailoverHTTPProvider([])
