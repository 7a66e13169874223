"""What the Solver makes for a task: the checks of a request (the consumer's key, the listed MISP
event), the ciphertext (in the journal, committed before `deliver` or `finish` names its hash), its
URI, and the record of a closed task (tasks.jsonl, the Solver's metrics). A mixin of Solver
(solver/daemon.py), which holds the journal, the chain client, the configuration and the sender."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from solver import journal as J
from solver import records
from solver.crypto import encrypt, normalize_public_key, result_hash
from solver.delivery import stored_ciphertext
from solver.errors import IntelError
from solver.journal import TaskRow


class TaskWork:
    def _problem(self, task) -> str | None:
        """Why this task cannot be delivered (reject reason), or None."""
        try:
            normalize_public_key(task.encryption_key)
        except ValueError as exc:
            return f"unusable encryption key: {exc}"
        try:
            self.cfg.intel.load(self._misp_uuid(task.token_id))
        except IntelError as exc:
            return f"MISP event unavailable: {exc.message}"
        return None

    def _with_key(self, row: TaskRow, task):
        """`task` with the consumer's key, read once from its Requested event (from the request's block)."""
        if task.encryption_key:
            return task
        if row.task_id not in self._keys:
            self._keys[row.task_id] = self.cti.task_details(task, row.requested_block or 0).encryption_key
        return replace(task, encryption_key=self._keys[row.task_id])

    def _is_solver(self, token_id: int) -> bool:
        if token_id not in self._authorized:
            self._authorized[token_id] = self.cti.is_solver(token_id, self.address)
        return self._authorized[token_id]

    def _misp_uuid(self, token_id: int) -> str:
        if token_id not in self._misp_uuids:
            self._misp_uuids[token_id] = self.cti.listing(token_id).misp_uuid
        return self._misp_uuids[token_id]

    def _encrypt(self, row: TaskRow, task) -> bool:
        try:
            plaintext = self.cfg.intel.load(self._misp_uuid(task.token_id))
            ciphertext = encrypt(task.encryption_key, plaintext)
        except (IntelError, ValueError) as exc:
            reason = f"MISP event unavailable: {exc.message}" if isinstance(exc, IntelError) else f"unusable encryption key: {exc}"
            return self._send(row, "reject", [row.task_id, reason[:200]], J.REJECT_SENT, reason=reason)
        digest = "0x" + result_hash(ciphertext).hex()
        # in the journal with its hash: one commit per tick, before any transaction naming the hash is sent
        self.journal.encrypted(row.task_id, ciphertext, step=J.ENCRYPTED, ct_hash=digest, uri=self._uri(row.task_id),
                               encrypted_at=time.time())
        self._crash("encrypted")
        return True

    def _uri(self, task_id: int) -> str:
        return f"{self.endpoint}/v1/tasks/{task_id}"

    def _ciphertext_ok(self, row: TaskRow) -> bool:
        data = stored_ciphertext(self.journal, self.cfg.outbox, row.task_id)
        return data is not None and row.ct_hash is not None and "0x" + result_hash(data).hex() == row.ct_hash

    # ---- records ---------------------------------------------------------------------------

    def _block_time(self, number: int | None) -> int | None:
        if number is None:
            return None
        if number not in self._block_times:
            self._block_times[number] = int(self.w3.eth.get_block(number)["timestamp"])
        return self._block_times[number]

    def _record(self, row: TaskRow) -> None:
        self._keys.pop(row.task_id, None)
        if row.recorded:
            return
        records.append(Path(self.cfg.records_dir or self.cfg.workdir), {
            "side": "solver", "task": row.task_id, "token": row.token_id, "org": self.cfg.org_name,
            "org_id": self.org_id, "solver": self.address, "outcome": row.step, "reason": row.reason,
            "consumer": row.consumer, "result_hash": row.ct_hash, "uri": row.uri,
            "requested_block": row.requested_block, "requested_time": self._block_time(row.requested_block),
            "accepted_block": row.accepted_block, "accepted_time": self._block_time(row.accepted_block),
            "finished_block": row.finished_block, "finished_time": self._block_time(row.finished_block),
            "seen_at": row.seen_at, "accept_sent_at": row.accept_sent_at, "accepted_at": row.accepted_at,
            "encrypted_at": row.encrypted_at, "finish_sent_at": row.finish_sent_at, "finished_at": row.finished_at,
        })
        self.journal.update(row.task_id, recorded=1)
        if self.metrics is not None:
            self.metrics.closed(row.step, row.seen_at, row.finished_at)
