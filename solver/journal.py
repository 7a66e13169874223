"""The Solver's journal (sqlite, WAL): the chain cursor and every task's step.

Every transaction is signed, then journaled with its raw bytes, then sent. After a crash
the journal knows each task's step and the exact bytes of any transaction that may be in
flight, so the Solver rebroadcasts those bytes (same nonce, same hash) instead of signing
anew: a finish that was sent but not mined is never sent twice with a new nonce, and an
accepted task is never forgotten.

Steps of one task (terminal ones in capitals in the docs, lower case here):
    new -> accept_sent -> accepted -> encrypted -> finish_sent -> finished
    new | accepted | encrypted -> reject_sent -> rejected
    lost   another solver accepted it first (normal)
    closed the consumer cancelled / let it expire, or another solver rejected it
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NEW, ACCEPT_SENT, ACCEPTED, ENCRYPTED, FINISH_SENT, FINISHED = (
    "new", "accept_sent", "accepted", "encrypted", "finish_sent", "finished")
REJECT_SENT, REJECTED, LOST, CLOSED = "reject_sent", "rejected", "lost", "closed"
TERMINAL = frozenset({FINISHED, REJECTED, LOST, CLOSED})
STEPS = (NEW, ACCEPT_SENT, ACCEPTED, ENCRYPTED, FINISH_SENT, FINISHED, REJECT_SENT, REJECTED, LOST, CLOSED)
HASH_WINDOW = 256  # cursor hashes kept for reorg detection

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER PRIMARY KEY,
    token_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    consumer TEXT,
    reason TEXT,
    pending_kind TEXT, pending_hash TEXT, pending_raw BLOB, pending_sent REAL,
    ct_hash TEXT, uri TEXT,
    requested_block INTEGER, accepted_block INTEGER, finished_block INTEGER,
    seen_at REAL, accept_sent_at REAL, accepted_at REAL, encrypted_at REAL,
    finish_sent_at REAL, finished_at REAL, updated_at REAL NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_step ON tasks(step);
CREATE TABLE IF NOT EXISTS outbox (task_id INTEGER PRIMARY KEY, ciphertext BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    hash TEXT PRIMARY KEY, task_id INTEGER NOT NULL, kind TEXT NOT NULL, nonce INTEGER NOT NULL,
    raw BLOB NOT NULL, signed_at REAL NOT NULL, block INTEGER, status INTEGER
);
"""

FIELDS = ("task_id", "token_id", "step", "consumer", "reason", "pending_kind", "pending_hash", "pending_raw",
          "pending_sent", "ct_hash", "uri", "requested_block", "accepted_block", "finished_block", "seen_at",
          "accept_sent_at", "accepted_at", "encrypted_at", "finish_sent_at", "finished_at", "updated_at", "recorded")


@dataclass(frozen=True)
class TaskRow:
    task_id: int
    token_id: int
    step: str
    consumer: str | None
    reason: str | None
    pending_kind: str | None
    pending_hash: str | None
    pending_raw: bytes | None
    pending_sent: float | None
    ct_hash: str | None
    uri: str | None
    requested_block: int | None
    accepted_block: int | None
    finished_block: int | None
    seen_at: float | None
    accept_sent_at: float | None
    accepted_at: float | None
    encrypted_at: float | None
    finish_sent_at: float | None
    finished_at: float | None
    updated_at: float
    recorded: int

    @property
    def terminal(self) -> bool:
        return self.step in TERMINAL


class Journal:
    """One sqlite file; safe to use from several threads (one connection each)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a journaled step survives power loss, not just a crash
            self._local.db = db
        return db

    def _tx(self, statements: list[tuple[str, tuple]]) -> None:
        db = self._db()
        held = getattr(self._local, "held", False)
        db.execute("SAVEPOINT step" if held else "BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                db.execute(sql, args)
            db.execute("RELEASE step" if held else "COMMIT")
        except BaseException:
            db.execute("ROLLBACK TO step" if held else "ROLLBACK")
            if held:
                db.execute("RELEASE step")
            raise

    @contextmanager
    def held(self):
        """This thread's writes inside, in one sqlite transaction (one fsync at the end instead of
        one per write). A crash loses a suffix of them: the journal is then what an earlier crash
        would have left, which the Solver recovers from. Journaling a transaction (`record_tx`,
        `record_txs`) commits what is held before it returns: a transaction is durably journaled
        before it is sent, held or not."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        self._local.held = True
        try:
            yield self
        finally:
            self._local.held = False
            try:
                db.execute("COMMIT")  # what was done is a valid prefix, also when the block raised
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    def _durable(self) -> None:
        """Commit what is held so far and hold on (no-op when nothing is held)."""
        if getattr(self._local, "held", False):
            db = self._db()
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ---- meta and cursor ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._tx([("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))])

    def cursor(self) -> tuple[int, str | None] | None:
        """(last processed block, its hash), or None before the first poll."""
        row = self._db().execute("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def advance(self, number: int, block_hash: str) -> None:
        self._tx([("INSERT OR REPLACE INTO blocks(number, hash) VALUES (?, ?)", (number, block_hash)),
                  ("DELETE FROM blocks WHERE number < ?", (number - HASH_WINDOW,))])

    def known_hashes(self) -> list[tuple[int, str]]:
        """Stored (block, hash) pairs, newest first: where a rewind may land."""
        return self._db().execute("SELECT number, hash FROM blocks ORDER BY number DESC").fetchall()

    def rewind(self, number: int) -> None:
        """Forget every stored hash above `number` (the next poll re-reads from number + 1)."""
        self._tx([("DELETE FROM blocks WHERE number > ?", (number,))])

    # ---- tasks -------------------------------------------------------------------------

    def get(self, task_id: int) -> TaskRow | None:
        row = self._db().execute(f"SELECT {', '.join(FIELDS)} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return TaskRow(*row) if row else None

    def tasks(self, *, active_only: bool = False) -> list[TaskRow]:
        sql = f"SELECT {', '.join(FIELDS)} FROM tasks"
        if active_only:
            sql += f" WHERE step NOT IN ({', '.join('?' * len(TERMINAL))})"
        sql += " ORDER BY task_id"
        return [TaskRow(*r) for r in self._db().execute(sql, tuple(TERMINAL) if active_only else ()).fetchall()]

    def ensure(self, task_id: int, token_id: int, *, block: int | None = None, step: str = NEW) -> bool:
        """Record a task seen for the first time; False if it was known."""
        now = time.time()
        db = self._db()
        cur = db.execute("INSERT OR IGNORE INTO tasks(task_id, token_id, step, requested_block, seen_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (task_id, token_id, step, block, now, now))
        return cur.rowcount == 1

    def update(self, task_id: int, **fields) -> None:
        self._tx([_update_statement(task_id, fields)])

    def encrypted(self, task_id: int, ciphertext: bytes, **fields) -> None:
        """Keep a task's ciphertext (what its delivery endpoint serves) with its fields (its hash),
        in one write: durable with the tick's commit, which precedes any transaction naming the hash."""
        self._tx([("INSERT OR REPLACE INTO outbox(task_id, ciphertext) VALUES (?, ?)", (task_id, ciphertext)),
                  _update_statement(task_id, fields)])

    def ciphertext(self, task_id: int) -> bytes | None:
        row = self._db().execute("SELECT ciphertext FROM outbox WHERE task_id = ?", (task_id,)).fetchone()
        return bytes(row[0]) if row else None

    def record_tx(self, task_id: int, kind: str, tx_hash: str, raw: bytes, nonce: int, step: str, **fields) -> None:
        """Journal a signed transaction before it is sent: the task moves to `step` with the tx pending."""
        self._tx(_record_statements(task_id, kind, tx_hash, raw, nonce, step, fields))
        self._durable()

    def record_txs(self, items: list[tuple[int, str, str, bytes, int, str, dict]]) -> None:
        """`record_tx` for several transactions in one sqlite transaction (one fsync):
        items of (task_id, kind, tx_hash, raw, nonce, step, fields)."""
        self._tx([statement for item in items for statement in _record_statements(*item)])
        self._durable()

    def mark_sent(self, task_ids: list[int], at: float) -> None:
        """The pending transactions of these tasks were handed to the node at `at`."""
        if task_ids:
            self._tx([("UPDATE tasks SET pending_sent = ?, updated_at = ? WHERE task_id = ?", (at, at, task_id))
                      for task_id in task_ids])

    def settle_tx(self, task_id: int, tx_hash: str, block: int | None, status: int | None, step: str, **fields) -> None:
        """A pending transaction is mined (or given up): clear it and move the task on."""
        fields = {"step": step, "pending_kind": None, "pending_hash": None, "pending_raw": None,
                  "pending_sent": None, **fields, "updated_at": time.time()}
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._tx([
            ("UPDATE txs SET block = ?, status = ? WHERE hash = ?", (block, status, tx_hash)),
            (f"UPDATE tasks SET {assignments} WHERE task_id = ?", (*fields.values(), task_id)),
        ])

    def txs(self, task_id: int | None = None) -> list[dict]:
        sql = "SELECT hash, task_id, kind, nonce, signed_at, block, status FROM txs"
        args: tuple = ()
        if task_id is not None:
            sql, args = sql + " WHERE task_id = ?", (task_id,)
        keys = ("hash", "task_id", "kind", "nonce", "signed_at", "block", "status")
        return [dict(zip(keys, r)) for r in self._db().execute(sql + " ORDER BY nonce", args).fetchall()]

    def counts(self) -> dict[str, int]:
        return dict(self._db().execute("SELECT step, COUNT(*) FROM tasks GROUP BY step").fetchall())


def _update_statement(task_id: int, fields: dict) -> tuple[str, tuple]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown journal fields {sorted(unknown)}")
    fields = {**fields, "updated_at": time.time()}
    assignments = ", ".join(f"{k} = ?" for k in fields)
    return f"UPDATE tasks SET {assignments} WHERE task_id = ?", (*fields.values(), task_id)


def _record_statements(task_id: int, kind: str, tx_hash: str, raw: bytes, nonce: int, step: str,
                       fields: dict) -> list[tuple[str, tuple]]:
    now = time.time()
    fields = {"step": step, "pending_kind": kind, "pending_hash": tx_hash, "pending_raw": raw,
              "pending_sent": None, **fields, "updated_at": now}
    assignments = ", ".join(f"{k} = ?" for k in fields)
    return [("INSERT INTO txs(hash, task_id, kind, nonce, raw, signed_at) VALUES (?, ?, ?, ?, ?, ?)",
             (tx_hash, task_id, kind, nonce, raw, now)),
            (f"UPDATE tasks SET {assignments} WHERE task_id = ?", (*fields.values(), task_id))]
