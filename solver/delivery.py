"""The organization's delivery endpoint: ciphertexts over HTTP, to each task's consumer only.

    GET /v1/tasks/<id>         X-CTI-Signature: <EIP-191 signature over the task id>
    200  the ciphertext (application/octet-stream), X-CTI-Result-Hash: keccak256 of it
    401  no signature, or a malformed one
    403  signed by an account that is not the task's consumer (as read from the chain)
    404  this Solver holds no delivery for the task

The consumer of a task is taken from the journal, where the Solver copied it from the
chain when it accepted the task. The ciphertext itself is public-key encrypted to the
consumer, so the signature check keeps even the ciphertext from everyone else.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from solver.crypto import fetch_signer, result_hash, sign_fetch
from solver.errors import DeliveryError
from solver.journal import Journal

log = logging.getLogger("solver.delivery")
PATH_RE = re.compile(r"^/v1/tasks/(\d+)$")
SIGNATURE_HEADER = "X-CTI-Signature"


def outbox_path(outbox: Path, task_id: int) -> Path:
    return outbox / f"{task_id}.bin"


class _Handler(BaseHTTPRequestHandler):
    server: "DeliveryServer"

    def log_message(self, fmt, *args) -> None:  # route to logging, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status == 401:
            self.send_header("WWW-Authenticate", f'{SIGNATURE_HEADER} realm="cti-delivery"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        match = PATH_RE.match(self.path)
        if not match:
            return self._reply(404, b"no such resource\n")
        task_id = int(match.group(1))
        signature = self.headers.get(SIGNATURE_HEADER)
        if not signature:
            return self._reply(401, b"signature required\n")
        signer = fetch_signer(signature, self.server.chain_id, self.server.tasks_address, task_id)
        if signer is None:
            return self._reply(401, b"malformed signature\n")
        row = self.server.journal.get(task_id)
        if row is None or not row.consumer or not row.ct_hash:
            return self._reply(404, b"no delivery for this task here\n")
        if signer.lower() != row.consumer.lower():
            log.warning("task %d: fetch signed by %s refused (consumer is %s)", task_id, signer, row.consumer)
            return self._reply(403, b"not the consumer of this task\n")
        try:
            body = outbox_path(self.server.outbox, task_id).read_bytes()
        except OSError:
            return self._reply(404, b"no delivery for this task here\n")
        self._reply(200, body, {"Content-Type": "application/octet-stream", "X-CTI-Result-Hash": row.ct_hash})


class DeliveryServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, journal: Journal, outbox: Path, chain_id: int, tasks_address: str) -> None:
        self.journal, self.outbox = journal, Path(outbox)
        self.chain_id, self.tasks_address = chain_id, tasks_address
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "DeliveryServer":
        self._thread = threading.Thread(target=self.serve_forever, name="delivery", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # the address lives in the organization's own network namespace (netns backend):
            # nothing but that org's node uses it, and the node's ports are another slot
            return exc.errno == errno.EADDRNOTAVAIL
    return True


def fetch(uri: str, task_id: int, account_private_key: str, chain_id: int, tasks_address: str, *,
          timeout: float = 10.0, expected_hash: bytes | None = None) -> bytes:
    """GET a delivery with a signed request; check it against `expected_hash` if given."""
    headers = {SIGNATURE_HEADER: sign_fetch(account_private_key, chain_id, tasks_address, task_id)}
    try:
        response = requests.get(uri, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise DeliveryError(f"task {task_id}: delivery endpoint {uri} does not answer ({exc.__class__.__name__})",
                            hint="is the publisher's Solver running? 'testbed solvers status'") from None
    if response.status_code != 200:
        raise DeliveryError(f"task {task_id}: {uri} answered {response.status_code}: {response.text.strip()[:200]}",
                            status=response.status_code)
    body = response.content
    if expected_hash is not None and result_hash(body) != expected_hash:
        raise DeliveryError(f"task {task_id}: the delivery's hash 0x{result_hash(body).hex()} is not the on-chain "
                            f"result hash 0x{expected_hash.hex()}", status=200)
    return body
