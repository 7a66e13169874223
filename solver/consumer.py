"""The consumer side: request a CTI, wait for Finished, fetch, verify, decrypt, validate, store, rate.

    consumer = Consumer(w3, deployment, account_key, workdir)
    task_id = consumer.request(token_id)        # buys a token in the same call if it holds none
    consumer.run(stop_event)                    # or consumer.poll() once per block
    event = consumer.fetch(task_id)             # one delivery, verified and decrypted

The request carries the consumer's delivery public key (derived from the account key,
solver.crypto), so only this account can decrypt. Verification: the ciphertext's keccak
must equal the result hash recorded on-chain by `finish`; the plaintext's keccak must equal
the listing's contentHash, and it must be a valid MISP event with the listing's UUID. A
plaintext that hashes to anything else is disputed on-chain (Feedback.dispute, with the hash
received and the reason) instead of rated: the ciphertext is bound by `finish`, so retrying
cannot change it. Any other failed verification is retried a few times (the Solver may be
restarting), then given up with rating 1 and the reason.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pymisp import MISPEvent

from solver import records
from solver.crypto import decrypt, delivery_public_key
from solver.delivery import fetch as http_fetch
from solver.errors import ContentMismatch, DeliveryError, IntelError
from solver.intel import validate_event
from testbed.cti import CtiClient, Deployment, TaskState
from testbed.state import write_bytes_atomic

log = logging.getLogger("solver.consumer")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    task_id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL, step TEXT NOT NULL,
    requested_at REAL, finished_seen_at REAL, consumed_at REAL, attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT, stored TEXT, rated INTEGER NOT NULL DEFAULT 0
);
"""
WAITING, CONSUMED, FAILED, CLOSED, DISPUTED = "waiting", "consumed", "failed", "closed", "disputed"
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Delivery:
    task_id: int
    token_id: int
    event: MISPEvent
    plaintext: bytes
    ciphertext_bytes: int


class Consumer:
    def __init__(self, w3, deployment: Deployment, account: LocalAccount | str, workdir: Path, *,
                 records_dir: Path | None = None, gas_limit: int | None = None, rating: int = 5,
                 fetch_timeout: float = 10.0) -> None:
        self.cti = CtiClient(w3, deployment, account, gas_limit=gas_limit)
        self.w3 = w3
        self.deployment = deployment
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.records_dir = records_dir
        self.rating = rating
        self.fetch_timeout = fetch_timeout
        self._key = self.cti.account.key
        self._db = sqlite3.connect(self.workdir / "consumer.sqlite", timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.cti.address

    @property
    def public_key(self) -> bytes:
        return delivery_public_key(self._key)

    # ---- requesting -------------------------------------------------------------------------

    def request(self, token_id: int) -> int:
        """Request the data with a token held, or buy one in the same transaction (`buyAndRequest`);
        the task id is journaled."""
        requested_at = time.time()
        if self.cti.balance(token_id) == 0:
            task_id = self.cti.buy_and_request(token_id, self.public_key).result
        else:
            task_id = self.cti.request(token_id, self.public_key).result
        self.track(task_id, token_id, requested_at=requested_at)
        return task_id

    def track(self, task_id: int, token_id: int, *, requested_at: float | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO requests(task_id, token_id, step, requested_at) VALUES (?, ?, ?, ?)",
                             (task_id, token_id, WAITING, requested_at))

    def status(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT step, COUNT(*) FROM requests GROUP BY step").fetchall())

    def rows(self) -> list[dict]:
        cur = self._db.execute("SELECT * FROM requests ORDER BY task_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    # ---- one delivery -----------------------------------------------------------------------

    def fetch(self, task_id: int) -> Delivery:
        """Fetch, verify against the chain, decrypt and validate one finished task's delivery."""
        task = self.cti.task(task_id)
        if task.state != TaskState.FINISHED:
            raise DeliveryError(f"task {task_id} is {task.state.name.lower()}, not finished")
        if task.consumer.lower() != self.address.lower():
            raise DeliveryError(f"task {task_id} was requested by {task.consumer}, not by {self.address}")
        ciphertext = http_fetch(task.result_uri, task_id, self._key, self.deployment.chain_id,
                                self.deployment.address("Tasks"), timeout=self.fetch_timeout,
                                expected_hash=task.result_hash)
        plaintext = decrypt(self._key, ciphertext)
        listing = self.cti.listing(task.token_id)
        received = keccak(plaintext)
        if received != listing.content_hash:
            raise ContentMismatch(f"task {task_id}: the delivery hashes to 0x{received.hex()}, the listing "
                                  f"promised 0x{listing.content_hash.hex()}", received_hash=received)
        try:
            event = validate_event(plaintext, listing.misp_uuid)
        except IntelError as exc:
            raise DeliveryError(f"task {task_id}: the delivery is not the listed MISP event: {exc.message}", status=200) from None
        return Delivery(task_id, task.token_id, event, plaintext, len(ciphertext))

    def consume(self, task_id: int) -> Delivery:
        """fetch, store the MISP event under received/, rate, and record the timing. A delivery
        that is not what was listed is disputed on-chain and ContentMismatch raised."""
        try:
            delivery = self.fetch(task_id)
        except ContentMismatch as exc:
            self._dispute(task_id, exc)
            raise
        path = self.workdir / "received" / f"{task_id}-{delivery.event.uuid}.json"
        write_bytes_atomic(path, delivery.plaintext)
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO requests(task_id, token_id, step) VALUES (?, ?, ?)",
                             (task_id, delivery.token_id, WAITING))
            self._db.execute("UPDATE requests SET step = ?, consumed_at = ?, stored = ? WHERE task_id = ?",
                             (CONSUMED, now, str(path), task_id))
        self._rate(task_id, self.rating, "delivered and verified")
        self._record(task_id)
        return delivery

    def _rate(self, task_id: int, rating: int, comment: str) -> None:
        if self.cti.c["Feedback"].functions.ratingOf(task_id).call() == 0:
            self.cti.rate(task_id, rating, comment)
        with self._lock:
            self._db.execute("UPDATE requests SET rated = ? WHERE task_id = ?", (rating, task_id))

    def _dispute(self, task_id: int, exc: ContentMismatch) -> None:
        log.error("%s: disputed on-chain", exc)
        if self.cti.dispute_of(task_id) is None and self.cti.c["Feedback"].functions.ratingOf(task_id).call() == 0:
            self.cti.dispute(task_id, exc.received_hash, str(exc)[:200])
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO requests(task_id, token_id, step) VALUES (?, ?, ?)",
                             (task_id, self.cti.task(task_id, details=False).token_id, WAITING))
            self._db.execute("UPDATE requests SET step = ?, reason = ? WHERE task_id = ?", (DISPUTED, str(exc), task_id))
        self._record(task_id)

    def _record(self, task_id: int) -> None:
        row = next(r for r in self.rows() if r["task_id"] == task_id)
        records.append(Path(self.records_dir or self.workdir), {
            "side": "consumer", "task": task_id, "token": row["token_id"], "consumer": self.address,
            "outcome": row["step"], "reason": row["reason"], "requested_at": row["requested_at"],
            "finished_seen_at": row["finished_seen_at"], "consumed_at": row["consumed_at"],
            "rating": row["rated"], "attempts": row["attempts"],
        })

    # ---- the loop ---------------------------------------------------------------------------

    def poll(self) -> int:
        """Look at every waiting request once; consume the finished ones. Returns how many are left."""
        waiting = self._db.execute("SELECT task_id, finished_seen_at, attempts FROM requests WHERE step = ?",
                                   (WAITING,)).fetchall()
        for task_id, seen, attempts in waiting:
            task = self.cti.task(task_id, details=False)
            if task.state in (TaskState.PENDING, TaskState.ACCEPTED):
                continue
            if task.state != TaskState.FINISHED:
                task = self.cti.task(task_id)  # a rejection's reason is in its event
                with self._lock:
                    self._db.execute("UPDATE requests SET step = ?, reason = ? WHERE task_id = ?",
                                     (CLOSED, task.reason or task.state.name.lower(), task_id))
                self._record(task_id)
                continue
            if seen is None:
                with self._lock:
                    self._db.execute("UPDATE requests SET finished_seen_at = ? WHERE task_id = ?", (time.time(), task_id))
            try:
                self.consume(task_id)
            except ContentMismatch:
                continue  # disputed on-chain and recorded: final
            except DeliveryError as exc:
                with self._lock:
                    self._db.execute("UPDATE requests SET attempts = attempts + 1, reason = ? WHERE task_id = ?",
                                     (str(exc), task_id))
                if exc.status in (None, 404) or exc.status >= 500:
                    log.info("task %d: %s (will retry)", task_id, exc)  # endpoint away or not ready yet
                    if attempts + 1 < MAX_ATTEMPTS * 5:
                        continue
                elif attempts + 1 < MAX_ATTEMPTS // 4:
                    log.warning("task %d: %s (will retry)", task_id, exc)
                    continue
                log.error("task %d: giving up: %s", task_id, exc)
                with self._lock:
                    self._db.execute("UPDATE requests SET step = ? WHERE task_id = ?", (FAILED, task_id))
                self._rate(task_id, 1, str(exc)[:200])
                self._record(task_id)
        return self._db.execute("SELECT COUNT(*) FROM requests WHERE step = ?", (WAITING,)).fetchone()[0]

    def run(self, stop: threading.Event, *, interval: float = 0.5, until_done: bool = False) -> None:
        last = None
        while not stop.is_set():
            try:
                head = self.w3.eth.block_number
                if head != last:
                    left = self.poll()
                    last = head
                    if until_done and left == 0:
                        return
            except Exception as exc:  # noqa: BLE001 - the node is away or restarting: the loop retries, it never dies
                log.warning("consumer: %s: %s (retrying)", exc.__class__.__name__, str(exc)[:200])
            stop.wait(interval)

    def wait_all(self, timeout: float, interval: float = 0.25) -> dict[str, int]:
        """Poll until nothing is waiting (or timeout); the counts by step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() == 0:
                break
            time.sleep(interval)
        return self.status()

    def close(self) -> None:
        self._db.close()

