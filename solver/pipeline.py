"""The Solver's transaction pipeline: the deliver (or accept and finish) and reject transactions a tick decides
on, pre-checked and sent together (JSON-RPC batches when the node takes them), journaled before
they leave, settled from receipts, and recognised when another transaction took their nonce.
A mixin of Solver (solver/daemon.py), which holds the journal, the sender and the chain client."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from solver import journal as J
from solver.errors import SolverError
from solver.journal import TaskRow
from testbed.cti import ContractRevert

log = logging.getLogger("solver")

REPLACED = -1  # a journaled transaction's status when another one took its nonce
UNREAD = object()  # a receipt not read yet (None means: read, not mined)


@dataclass(frozen=True)
class Intent:
    """A transaction a tick decided on, sent with the others of that tick (`Solver._flush`)."""

    row: TaskRow
    function: str
    args: list
    step: str
    fields: dict


class TransactionPipeline:
    """Solver's transactions (see the module docstring)."""

    def _send(self, row: TaskRow, function: str, args: list, step: str, **fields) -> bool:
        """Sign, journal, send. While a tick collects (the node takes batches), the call joins the
        tick's batch instead (`_flush`) and the task waits for the next tick: False."""
        if self.nonce is None:
            raise SolverError("reconcile() must run before the Solver sends anything")
        if self._intents is not None:
            self._intents.append(Intent(row, function, args, step, fields))
            return False
        signed = self.sender.sign(self.tasks, function, args, self.nonce)
        self._stamp(function, fields)
        self.journal.record_tx(row.task_id, function, signed.tx_hash, signed.raw, signed.nonce, step, **fields)
        self.nonce += 1
        self._crash(f"{function}_signed")
        self._transmit(row.task_id, signed.raw)
        self._crash(f"{function}_sent")
        log.info("task %d: %s sent (%s, nonce %d)", row.task_id, function, signed.tx_hash, signed.nonce)
        return True

    @staticmethod
    def _stamp(function: str, fields: dict) -> None:
        stamp = {"accept": "accept_sent_at", "finish": "finish_sent_at", "deliver": "finish_sent_at"}.get(function)
        if stamp:
            fields[stamp] = time.time()

    def _flush(self, intents: list[Intent]) -> None:
        """Send a tick's transactions with three round trips and one journal write instead of
        three each: pre-check them in one eth_call batch, sign, journal them in one sqlite
        transaction, send them in one batch. Calls whose gas is not known yet (the first accept
        and finish, every reject) and every call when a batch fails go one by one, as before."""
        checked, single = [], []
        for intent in intents:
            gas = self.sender.known_gas(intent.function)
            if gas is None:
                single.append(intent)
            else:
                checked.append((intent, self.sender.build(self.tasks, intent.function, intent.args), gas))
        try:
            verdicts = self.sender.precheck_batch([(i.function, tx, gas) for i, tx, gas in checked]) if checked else []
        except Exception as exc:  # noqa: BLE001 - any batch failure falls back to checking one by one
            log.warning("pre-check batch failed (%s): checking one by one", str(exc)[:200])
            checked, single, verdicts = [], intents, []
        ready = []
        for (intent, tx, gas), verdict in zip(checked, verdicts):
            if verdict is None:
                ready.append((intent, tx, gas))
            elif isinstance(verdict, ContractRevert):
                self._after_revert(intent, verdict)
            else:  # e.g. out of the reused gas: estimate again next time
                self.sender.forget_gas(intent.function)
                log.warning("task %d: %s", intent.row.task_id, verdict)
        if ready:
            self._send_batch(ready)
        for intent in single:
            with self._task_errors(intent.row.task_id):
                try:
                    self._send(intent.row, intent.function, intent.args, intent.step, **intent.fields)
                except ContractRevert as exc:
                    self._after_revert(intent, exc)

    def _after_revert(self, intent: Intent, exc: ContractRevert) -> None:
        """A pre-check refused a call of the tick's batch: what `_act` does for the same refusal."""
        if intent.function in ("accept", "deliver") and exc.error == "BadState":
            return  # someone was faster: the next tick's read says who
        if intent.function == "finish" and exc.error == "DeadlinePassed":
            with self._task_errors(intent.row.task_id):
                self._reject_late(intent.row)
            return
        log.info("task %d: %s (will look again)", intent.row.task_id, exc.reason)

    def _send_batch(self, ready: list[tuple[Intent, dict, int]]) -> None:
        signed = []
        for intent, tx, gas in ready:
            signed.append((intent, self.sender.sign_tx(tx, gas, self.nonce + len(signed))))
            self._stamp(intent.function, intent.fields)
        self.journal.record_txs([(i.row.task_id, i.function, tx.tx_hash, tx.raw, tx.nonce, i.step, i.fields)
                                 for i, tx in signed])
        self.nonce += len(signed)
        for intent, _ in signed:
            self._crash(f"{intent.function}_signed")
        try:
            outcomes = self.sender.send_batch([tx.raw for _, tx in signed])
        except Exception as exc:  # journaled: re-sent one by one on the next checks
            log.warning("sending a batch of %d failed (%s); will re-send the same bytes", len(signed), str(exc)[:200])
            return
        sent = []
        for (intent, tx), outcome in zip(signed, outcomes):
            if isinstance(outcome, Exception):
                log.warning("task %d: sending failed (%s); will re-send the same bytes", intent.row.task_id,
                            str(outcome)[:200])
            else:
                sent.append(intent.row.task_id)
                log.info("task %d: %s sent (%s, nonce %d)", intent.row.task_id, intent.function, tx.tx_hash, tx.nonce)
        self.journal.mark_sent(sent, time.time())
        for intent, _ in signed:
            self._crash(f"{intent.function}_sent")

    def _transmit(self, task_id: int, raw: bytes) -> None:
        try:
            self.sender.send(raw)
        except Exception as exc:  # kept in the journal: re-sent on the next check
            log.warning("task %d: sending failed (%s); will re-send the same bytes", task_id, str(exc)[:200])
            return
        self.journal.update(task_id, pending_sent=time.time())

    def _check_pending(self, row: TaskRow, *, force_send: bool = False, receipt=UNREAD) -> bool:
        """Settle a journaled transaction if mined; else (re-)send its bytes when due. True if settled.
        `receipt`: already read this tick (None: not mined), else read now."""
        if receipt is UNREAD:
            receipt = self.sender.receipt(row.pending_hash)
        if receipt is None and self._nonce_taken(row):
            receipt = self.sender.receipt(row.pending_hash)  # mined since the first look?
            if receipt is None:
                return self._replaced(row)
        if receipt is None:
            due = row.pending_sent is None or time.time() - row.pending_sent > self.cfg.rebroadcast_after
            if force_send or due:
                log.info("task %d: re-sending journaled %s %s", row.task_id, row.pending_kind, row.pending_hash)
                self._transmit(row.task_id, row.pending_raw)
            return False
        ok = receipt["status"] == 1
        block = receipt["blockNumber"]
        kind = row.pending_kind
        if not ok:  # reverted (e.g. two solvers accepted in one block): the chain decides what next
            log.info("task %d: %s %s reverted in block %d", row.task_id, kind, row.pending_hash, block)
            self.sender.forget_gas(kind)  # in case it ran out of the reused estimate
            fallback = {J.ACCEPT_SENT: J.NEW, J.FINISH_SENT: J.ENCRYPTED, J.REJECT_SENT: J.NEW}.get(row.step, J.NEW)
            self.journal.settle_tx(row.task_id, row.pending_hash, block, 0, fallback)
            return True
        if kind == "accept":
            self.journal.settle_tx(row.task_id, row.pending_hash, block, 1, J.ACCEPTED,
                                   accepted_block=block, accepted_at=time.time())
            self._crash("accepted")
        elif kind == "finish":
            self.journal.settle_tx(row.task_id, row.pending_hash, block, 1, J.FINISHED,
                                   finished_block=block, finished_at=time.time())
            self._crash("finished")
        elif kind == "deliver":  # accepted and finished in this one block
            now = time.time()
            self.journal.settle_tx(row.task_id, row.pending_hash, block, 1, J.FINISHED, accepted_block=block,
                                   accepted_at=now, finished_block=block, finished_at=now)
            self._crash("finished")
        else:
            self.journal.settle_tx(row.task_id, row.pending_hash, block, 1, J.REJECTED)
        return True

    def _nonce_taken(self, row: TaskRow) -> bool:
        """Whether the account's mined nonce has passed the journaled transaction's nonce: then
        either those bytes are in a block, or another transaction took the nonce and they never
        will be (a "nonce too low" answer to a re-send says only that)."""
        nonce = next((t["nonce"] for t in self.journal.txs(row.task_id) if t["hash"] == row.pending_hash), None)
        if nonce is None:
            return False
        if self._mined_nonce is None:
            self._mined_nonce = self.sender.mined_nonce()
        return self._mined_nonce > nonce

    def _replaced(self, row: TaskRow) -> bool:
        """Another transaction of this account took the nonce of the journaled one: it is settled
        as replaced (status -1) and the task goes back to the step before, to be signed afresh."""
        log.warning("task %d: %s %s was replaced (its nonce is in a block, its hash is not); signing it again",
                    row.task_id, row.pending_kind, row.pending_hash)
        fallback = {J.ACCEPT_SENT: J.NEW, J.FINISH_SENT: J.ENCRYPTED, J.REJECT_SENT: J.NEW}.get(row.step, J.NEW)
        self.journal.settle_tx(row.task_id, row.pending_hash, None, REPLACED, fallback)
        if self.nonce is not None:
            self.nonce = max(self.nonce, self._mined_nonce or 0)
        return True
