"""The Solver's delivery endpoint under hostile clients: replayed and stale requests, task ids that
cannot exist, oversized heads, hundreds of idle half-sent connections, log floods; and the consumer
side's bounded read. A real server on 127.0.0.1 (a free port from the kernel), a real journal."""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from eth_account import Account

from solver.crypto import result_hash
from solver.delivery import (
    MAX_DELIVERY_BYTES,
    DeliveryServer,
    ThrottledLog,
    fetch,
    fetch_headers,
    outbox_path,
    stored_ciphertext,
)
from solver.errors import DeliveryError
from solver.journal import Journal

CHAIN_ID, TASKS = 1337, "0x" + "ab" * 20
CONSUMER, STRANGER = Account.create(), Account.create()
TASK = 7
BODY = b"ciphertext of task 7"


@pytest.fixture(params=["journal", "outbox file"])
def server(tmp_path, request):
    """The ciphertext in the journal (as the Solver keeps it), or in an outbox file (as Solvers before
    that kept it: those deliveries stay servable)."""
    journal = Journal(tmp_path / "journal.db")
    journal.ensure(TASK, 1)
    journal.update(TASK, consumer=CONSUMER.address, ct_hash="0x" + result_hash(BODY).hex())
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    if request.param == "journal":
        journal.encrypted(TASK, BODY)
    else:
        outbox_path(outbox, TASK).write_bytes(BODY)
    srv = DeliveryServer("127.0.0.1", 0, journal, outbox, CHAIN_ID, TASKS).start()
    yield srv
    srv.stop()
    journal.close()


def url(srv, task=TASK) -> str:
    return f"{srv.url}/v1/tasks/{task}"


def get(srv, headers, task=TASK, timeout=5.0) -> requests.Response:
    return requests.get(url(srv, task), headers=headers, timeout=timeout)


def test_the_consumer_fetches_its_delivery(server):
    assert fetch(url(server), TASK, CONSUMER.key.hex(), CHAIN_ID, TASKS, expected_hash=result_hash(BODY)) == BODY


def test_a_replayed_request_is_refused(server):
    headers = fetch_headers(CONSUMER.key.hex(), CHAIN_ID, TASKS, TASK)
    first, again = get(server, headers), get(server, headers)
    assert first.status_code == 200 and first.content == BODY
    assert again.status_code == 401 and "replayed" in again.text


@pytest.mark.parametrize("skew", [-3600, 3600])
def test_a_request_signed_outside_the_time_window_is_refused(server, skew):
    headers = fetch_headers(CONSUMER.key.hex(), CHAIN_ID, TASKS, TASK, timestamp=int(time.time()) + skew)
    response = get(server, headers)
    assert response.status_code == 401 and "window" in response.text


def test_another_account_is_forbidden_and_a_flood_of_refusals_logs_once(server, caplog):
    caplog.set_level(logging.WARNING, logger="solver.delivery")
    codes = {get(server, fetch_headers(STRANGER.key.hex(), CHAIN_ID, TASKS, TASK)).status_code for _ in range(50)}
    assert codes == {403}
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_throttled_log_counts_what_it_left_out(caplog):
    now = [0.0]
    throttled = ThrottledLog(every_s=10, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="solver.delivery")
    logged = [throttled.warning("403", "refused %d", i) for i in range(5)]
    now[0] = 11.0
    throttled.warning("403", "refused %d", 5)
    assert logged == [True, False, False, False, False]
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 5 (+4 more since)"]


@pytest.mark.parametrize("task, status", [(10**30, 400), ("9" * 5000, 400), (2**63 - 1, 404), (999, 404)])
def test_task_ids_that_cannot_exist_get_400_with_a_reason(server, task, status):
    headers = fetch_headers(CONSUMER.key.hex(), CHAIN_ID, TASKS, 1)
    response = get(server, headers, task=task)
    assert response.status_code == status, response.text
    if status == 400:
        assert "out of range" in response.text


@pytest.mark.parametrize("head", [b"GET /v1/tasks/7 HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n",
                                  b"NONSENSE\r\n\r\n", b"POST /v1/tasks/7 HTTP/1.1\r\n\r\n"])
def test_an_oversized_or_malformed_head_gets_no_delivery(server, head):
    with socket.create_connection(server.server_address, timeout=5) as sock:
        try:
            sock.sendall(head)
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert answer == b"" or answer.split(b" ")[1] in (b"400", b"405")


def test_500_idle_half_sent_connections_do_not_starve_a_genuine_fetch(server):
    slow = []
    try:
        for _ in range(500):
            sock = socket.create_connection(server.server_address, timeout=5)
            sock.sendall(b"GET /v1/tasks/7 HTTP/1.1\r\nX-CTI-Time: ")  # and never the rest
            slow.append(sock)
        # served although 500 connections hold partial requests (each costs a coroutine, no thread)
        assert get(server, fetch_headers(CONSUMER.key.hex(), CHAIN_ID, TASKS, TASK), timeout=2.0).content == BODY
        # and the server drops the idle ones once their head is overdue
        deadline = time.monotonic() + 15
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.open_connections == 0
    finally:
        for sock in slow:
            sock.close()


class _Huge(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(MAX_DELIVERY_BYTES + 1024))
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range((MAX_DELIVERY_BYTES + 1024) // len(chunk) + 1):
                self.wfile.write(chunk)
        except OSError:
            pass  # the consumer stopped reading: that is the point

    def log_message(self, *args):
        pass


def test_the_consumer_reads_at_most_the_delivery_limit():
    huge = HTTPServer(("127.0.0.1", 0), _Huge)
    thread = threading.Thread(target=huge.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryError, match="larger than"):
            fetch(f"http://127.0.0.1:{huge.server_address[1]}/v1/tasks/7", TASK, CONSUMER.key.hex(), CHAIN_ID, TASKS)
    finally:
        huge.shutdown()
        huge.server_close()


def test_a_ciphertext_is_kept_with_its_hash_in_one_write_and_the_journal_copy_wins(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    journal.ensure(TASK, 1)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    outbox_path(outbox, TASK).write_bytes(b"an older file")
    with pytest.raises(ValueError, match="unknown journal fields"):  # nothing of a refused write is kept
        journal.encrypted(TASK, BODY, ct_hash="0x01", no_such_field=1)
    assert journal.ciphertext(TASK) is None and journal.get(TASK).ct_hash is None
    assert stored_ciphertext(journal, outbox, TASK) == b"an older file"
    journal.encrypted(TASK, BODY, ct_hash="0x" + result_hash(BODY).hex())
    assert journal.get(TASK).ct_hash == "0x" + result_hash(BODY).hex()
    assert stored_ciphertext(journal, outbox, TASK) == BODY and stored_ciphertext(journal, outbox, TASK + 1) is None
    journal.close()

