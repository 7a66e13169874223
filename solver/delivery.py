"""The organization's delivery endpoint: ciphertexts over HTTP, to each task's consumer only.

    GET /v1/tasks/<id>   X-CTI-Signature: EIP-191 signature over (chain, Tasks, id, time, nonce)
                         X-CTI-Time: unix seconds   X-CTI-Nonce: 16-64 hex digits, never reused
    200  the ciphertext (application/octet-stream), X-CTI-Result-Hash: keccak256 of it
    400  a task id that cannot exist (past 2^63: ids count up from 1), or a malformed request
    401  no signature, a malformed one, a time outside the window, or a nonce seen before (replay)
    403  signed by an account that is not the task's consumer (as read from the chain)
    404  this Solver holds no delivery for the task

The consumer of a task is taken from the journal, where the Solver copied it from the
chain when it accepted the task. The ciphertext itself is public-key encrypted to the
consumer, so the signature check keeps even the ciphertext from everyone else.

Served by one asyncio loop in a thread: an idle or slow connection costs a coroutine, not a
thread. The whole request head must arrive within HEAD_TIMEOUT_S and fit in MAX_HEAD_BYTES; at
most MAX_CONNECTIONS are open at once (more are closed at once); every answer closes its
connection; refusals are logged at most once per LOG_EVERY_S with the number left out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import secrets
import socket
import threading
import time
from pathlib import Path

import requests

from solver.crypto import FETCH_WINDOW_S, fetch_signer, result_hash, sign_fetch
from solver.errors import DeliveryError
from solver.journal import Journal

log = logging.getLogger("solver.delivery")
PATH_RE = re.compile(r"^/v1/tasks/(\d{1,100})$")
SIGNATURE_HEADER = "X-CTI-Signature"
TIME_HEADER = "X-CTI-Time"
NONCE_HEADER = "X-CTI-Nonce"
NONCE_RE = re.compile(r"^[0-9a-f]{16,64}$")
MAX_TASK_ID = 2**63 - 1  # task ids count up from 1; the journal (SQLite) holds 64-bit integers
HEAD_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 8192
MAX_CONNECTIONS = 1024
MAX_DELIVERY_BYTES = 16 * 1024 * 1024  # a consumer reads at most this much of a delivery
LOG_EVERY_S = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def outbox_path(outbox: Path, task_id: int) -> Path:
    return outbox / f"{task_id}.bin"


def stored_ciphertext(journal: Journal, outbox: Path, task_id: int) -> bytes | None:
    """A task's ciphertext: from the journal, or from the outbox file where Solvers before the
    journal kept their ciphertexts (tasks they finished stay servable)."""
    data = journal.ciphertext(task_id)
    if data is not None:
        return data
    try:
        return outbox_path(outbox, task_id).read_bytes()
    except OSError:
        return None


def fetch_headers(account_private_key: str, chain_id: int, tasks_address: str, task_id: int,
                  timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers of a signed fetch: now and a fresh nonce unless given."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_hex(16)
    return {SIGNATURE_HEADER: sign_fetch(account_private_key, chain_id, tasks_address, task_id, timestamp, nonce),
            TIME_HEADER: str(timestamp), NONCE_HEADER: nonce}


class ReplayGuard:
    """Nonces seen within the time window; one seen again is a replay. Memory is bounded by the
    window: a nonce is forgotten once its request's time has left it."""

    def __init__(self, window_s: float = FETCH_WINDOW_S, clock=time.time) -> None:
        self.window_s, self.clock = window_s, clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, timestamp: int, nonce: str) -> str | None:
        """None if fresh (and now remembered); otherwise why the request is refused."""
        now = self.clock()
        if abs(now - timestamp) > self.window_s:
            return f"request time outside the {self.window_s:.0f} s window; check the clock"
        with self._lock:
            for old in [n for n, until in self._seen.items() if until < now]:
                del self._seen[old]
            if nonce in self._seen:
                return "this request was already served (replayed nonce)"
            self._seen[nonce] = timestamp + self.window_s
        return None


class ThrottledLog:
    """One warning per kind per `every_s` seconds, with how many were left out since."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock=time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args) -> bool:
        now = self.clock()
        if now - self._last.get(kind, -self.every_s) < self.every_s:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return False
        dropped = self._dropped.pop(kind, 0)
        self._last[kind] = now
        log.warning(message + (f" (+{dropped} more since)" if dropped else ""), *args)
        return True


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, headers with lower-case names) of a request head, or None if malformed."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/"):
        return None
    headers = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


class DeliveryServer:
    def __init__(self, host: str, port: int, journal: Journal, outbox: Path, chain_id: int, tasks_address: str) -> None:
        self.journal, self.outbox = journal, Path(outbox)
        self.chain_id, self.tasks_address = chain_id, tasks_address
        self.replays = ReplayGuard()
        self.refusals = ThrottledLog()
        self._sock = socket.create_server((host, port))  # bound now: a taken port fails here, not later
        self.server_address = self._sock.getsockname()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.open_connections = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "DeliveryServer":
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, sock=self._sock, limit=MAX_HEAD_BYTES, backlog=MAX_CONNECTIONS))
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                server.close()
                self._loop.run_until_complete(server.wait_closed())
                self._loop.close()

        self._thread = threading.Thread(target=run, name="delivery", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        else:
            self._sock.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self.open_connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            status, body, headers = self.answer(head)
            lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}", f"Content-Length: {len(body)}", "Connection: close",
                     *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # too slow, too long or gone: the connection is closed, nothing else to say
        finally:
            self.open_connections -= 1
            writer.close()

    def answer(self, head: bytes) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for one request head."""
        parsed = _parse_head(head)
        if parsed is None:
            return 400, b"malformed request\n", {}
        method, path, headers = parsed
        if method != "GET":
            return 405, b"only GET\n", {"Allow": "GET"}
        match = PATH_RE.match(path)
        if not match:
            return (400, b"task id out of range\n", {}) if path.startswith("/v1/tasks/") else (404, b"no such resource\n", {})
        task_id = int(match.group(1))
        if task_id > MAX_TASK_ID:
            return 400, b"task id out of range (at most 2^63 - 1)\n", {}
        signature, stamp, nonce = (headers.get(h.lower()) for h in (SIGNATURE_HEADER, TIME_HEADER, NONCE_HEADER))
        if not (signature and stamp and nonce):
            return 401, b"signature, time and nonce required\n", {"WWW-Authenticate": f'{SIGNATURE_HEADER} realm="cti-delivery"'}
        if not stamp.isdigit() or len(stamp) > 12 or not NONCE_RE.match(nonce):
            return 401, b"malformed time or nonce\n", {}
        signer = fetch_signer(signature, self.chain_id, self.tasks_address, task_id, int(stamp), nonce)
        if signer is None:
            return 401, b"malformed signature\n", {}
        row = self.journal.get(task_id)
        if row is None or not row.consumer or not row.ct_hash:
            return 404, b"no delivery for this task here\n", {}
        if signer.lower() != row.consumer.lower():
            self.refusals.warning("403", "task %d: fetch signed by %s refused (consumer is %s)", task_id, signer, row.consumer)
            return 403, b"not the consumer of this task\n", {}
        refused = self.replays.check(int(stamp), nonce)
        if refused:
            self.refusals.warning("401", "task %d: %s", task_id, refused)
            return 401, (refused + "\n").encode(), {}
        body = stored_ciphertext(self.journal, self.outbox, task_id)
        if body is None:
            return 404, b"no delivery for this task here\n", {}
        return 200, body, {"Content-Type": "application/octet-stream", "X-CTI-Result-Hash": row.ct_hash}


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


def _read_at_most(response: requests.Response, limit: int) -> bytes:
    """The body, stopping once `limit` bytes have come (a larger answer is cut there)."""
    chunks, size = [], 0
    for chunk in response.iter_content(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def fetch(uri: str, task_id: int, account_private_key: str, chain_id: int, tasks_address: str, *,
          timeout: float = 10.0, expected_hash: bytes | None = None) -> bytes:
    """GET a delivery with a signed request (read at most MAX_DELIVERY_BYTES); check it against
    `expected_hash` if given."""
    headers = fetch_headers(account_private_key, chain_id, tasks_address, task_id)
    try:
        with requests.get(uri, headers=headers, timeout=timeout, stream=True) as response:
            body = _read_at_most(response, MAX_DELIVERY_BYTES + 1 if response.status_code == 200 else 512)
        if response.status_code != 200:
            raise DeliveryError(f"task {task_id}: {uri} answered {response.status_code}: "
                                f"{body.decode(errors='replace').strip()[:200]}", status=response.status_code)
    except requests.RequestException as exc:
        raise DeliveryError(f"task {task_id}: delivery endpoint {uri} does not answer ({exc.__class__.__name__})",
                            hint="is the publisher's Solver running? 'testbed solvers status'") from None
    if len(body) > MAX_DELIVERY_BYTES:
        raise DeliveryError(f"task {task_id}: the delivery at {uri} is larger than {MAX_DELIVERY_BYTES} bytes; refused",
                            status=200)
    if expected_hash is not None and result_hash(body) != expected_hash:
        raise DeliveryError(f"task {task_id}: the delivery's hash 0x{result_hash(body).hex()} is not the on-chain "
                            f"result hash 0x{expected_hash.hex()}", status=200)
    return body
