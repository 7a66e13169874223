"""The Solver: one organization's off-chain worker for its CTI tasks.

    solver = Solver(w3, deployment, account, SolverConfig(workdir=..., intel=DirectoryStore(...)))
    solver.run(stop_event)      # or solver.start_endpoint(); solver.reconcile(); solver.tick()

Each tick (once per new head): read new task events of this org (solver.watch), look at
every unfinished task in the journal, settle transactions that got mined, and move each
task one or more steps: encrypt, then `deliver` (accept and finish in one transaction; with
`claim_first`: accept, encrypt, finish); or reject with a reason when the MISP event is
missing or invalid or the consumer's key is unusable. Tasks another Solver of
the org won are "lost", which is normal. The journal (solver.journal) makes all of it
crash-safe; see `reconcile`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from solver import journal as J
from solver.crash import CRASH_POINTS, CrashPoints  # noqa: F401  (CRASH_POINTS re-exported)
from solver.delivery import DeliveryServer
from solver.errors import SolverError
from solver.intel import IntelStore
from solver.journal import Journal, TaskRow
from solver.metrics import SolverMetrics
from solver.pipeline import REPLACED, UNREAD, Intent, TransactionPipeline  # noqa: F401  (re-exported)
from solver.txs import TxSender
from solver.watch import TaskWatcher
from solver.work import TaskWork
from testbed.chain.rpc import RpcError
from testbed.cti import ContractRevert, CtiClient, Deployment, TaskState
from testbed.errors import ChainError
from testbed.state import write_text_atomic

log = logging.getLogger("solver")

ENDPOINT_FILE = "endpoint.json"


@dataclass
class SolverConfig:
    workdir: Path
    intel: IntelStore
    org_name: str = ""
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests); the manager passes the recorded one
    depth: int = 1  # confirmations before an event is read (0 on QBFT)
    poll_interval: float = 0.25
    rebroadcast_after: float = 8.0
    gas_limit: int | None = None
    records_dir: Path | None = None
    crash_after: dict[str, int] = field(default_factory=dict)  # fault injection: SIGKILL self
    # accept a task before making its ciphertext, then finish it (two transactions: the task is the
    # Solver's while it works); by default the ciphertext comes first and one `deliver` takes the task
    claim_first: bool = False
    metrics_dir: Path | None = None  # the network's monitor directory (solver/metrics.py); None: no metrics

    @property
    def journal_path(self) -> Path:
        return Path(self.workdir) / "solver.sqlite"

    @property
    def outbox(self) -> Path:
        return Path(self.workdir) / "outbox"

class Solver(TransactionPipeline, TaskWork):
    def __init__(self, w3, deployment: Deployment, account: LocalAccount | str, config: SolverConfig) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.cfg = config
        self.cti = CtiClient(w3, deployment, account, gas_limit=config.gas_limit)
        self.account = self.cti.account
        self.sender = TxSender(w3, self.account, gas_limit=config.gas_limit)
        self.tasks = self.cti.c["Tasks"]
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
        config.outbox.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.journal_path)
        self.org_id = 0
        self.watcher: TaskWatcher | None = None
        self.server: DeliveryServer | None = None
        self.nonce: int | None = None
        self._crash_points = CrashPoints(config.crash_after)
        self.metrics = SolverMetrics(config.metrics_dir, config.org_name) if config.metrics_dir else None
        self._block_times: dict[int, int] = {}
        self._misp_uuids: dict[int, str] = {}  # token -> its MISP event (fixed when the CTI is published)
        self._keys: dict[int, bytes] = {}  # task -> the consumer's key (its Requested event), until delivered
        self._authorized: dict[int, bool] = {}  # token -> this account may solve it (read once per tick)
        self._said_no_batches = False
        self._mined_nonce: int | None = None  # the account's mined nonce, read at most once a tick
        self._batches = False  # the node answered a JSON-RPC batch (set by _prefetch)
        self._last_task = None  # the chain's view of the task `_act` looked at last
        self._intents: list[Intent] | None = None  # collecting during a tick, when the node takes batches
        self._deferred: list[int] | None = None  # tasks whose state the tick reads in its second batch

    # ---- set-up -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def endpoint(self) -> str:
        if self.server is None:
            raise SolverError("the delivery endpoint is not started")
        return self.server.url

    def start_endpoint(self) -> str:
        self.server = DeliveryServer(self.cfg.host, self.cfg.port, self.journal, self.cfg.outbox,
                                     self.deployment.chain_id, self.deployment.address("Tasks")).start()
        return self.server.url

    def connect(self) -> None:
        """Learn this account's org (it must be a solver of a member org) and set up the watcher."""
        org, roles = self.cti.org_of()
        if org == 0:
            raise SolverError(f"{self.address} is not an account of a member organization")
        self.org_id = org
        previous = self.journal.meta("tasks")
        if previous is not None and previous != self.tasks.address:
            self._archive(previous)
        start = self.deployment.contracts["Tasks"].block
        self.watcher = TaskWatcher(self.w3, self.tasks.address, self.journal, publisher_org=org,
                                   depth=self.cfg.depth, start_block=start)
        for key, value in (("chain_id", str(self.deployment.chain_id)), ("tasks", self.tasks.address),
                           ("account", self.address), ("org_id", str(org))):
            known = self.journal.meta(key)
            if known is None:
                self.journal.set_meta(key, value)
            elif known != value:
                raise SolverError(f"the journal {self.cfg.journal_path} belongs to {key} {known}, not {value}",
                                  hint="the chain was redeployed: move the old solver directory away")

    def _archive(self, previous_tasks: str) -> None:
        """The contracts were redeployed: keep the old journal and outbox aside, start afresh."""
        log.warning("new deployment (Tasks %s, was %s): archiving the old journal", self.tasks.address, previous_tasks)
        self.journal.close()
        workdir = Path(self.cfg.workdir)
        suffix = previous_tasks[:10].lower()
        for name in ("solver.sqlite", "solver.sqlite-wal", "solver.sqlite-shm"):
            if (workdir / name).exists():
                os.replace(workdir / name, workdir / name.replace("solver.sqlite", f"solver-{suffix}.sqlite"))
        if self.cfg.outbox.exists():
            os.replace(self.cfg.outbox, workdir / f"outbox-{suffix}")
        self.cfg.outbox.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.cfg.journal_path)
        if self.server is not None:
            self.server.journal = self.journal

    def reconcile(self) -> None:
        """Before acting after a (re)start: re-send the exact bytes of every journaled transaction
        that is not mined yet (same nonce, same hash), settle those that are, and continue
        nonces after the highest one the journal or the node knows."""
        for row in self.journal.tasks(active_only=True):
            if row.pending_hash:
                self._check_pending(row, force_send=True)
        used = [t["nonce"] for t in self.journal.txs()]
        self.nonce = max([self.sender.pending_nonce(), *(n + 1 for n in used)])
        log.info("reconciled: %s; next nonce %d", self.journal.counts(), self.nonce)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        if self.server is None:
            self.start_endpoint()
        last_head: int | None = None
        ready = False
        backoff = self.cfg.poll_interval
        while not stop.is_set():
            try:
                if not ready:
                    self.connect()
                    self.reconcile()
                    ready = True
                    self._write_endpoint()
                    log.info("solver %s of org %d serving %s", self.address, self.org_id, self.endpoint)
                head = self.w3.eth.block_number
                if head != last_head:
                    self.tick(head)
                    last_head = head
                backoff = self.cfg.poll_interval
            except SolverError:
                raise
            except Exception as exc:  # the node is away or restarting: retry, slower
                log.warning("chain access failed (%s: %s); retrying", exc.__class__.__name__, str(exc)[:200])
                backoff = min(5.0, backoff * 2)
            stop.wait(backoff)

    def tick(self, head: int | None = None) -> None:
        """Read new events, then move every unfinished task as far as it can go now. The tick's
        journal writes are held in one sqlite transaction (`Journal.held`): one fsync per tick and
        per batch of sends instead of one per step, which was a busy Solver's largest wait."""
        assert self.watcher is not None, "connect() first"
        self._authorized.clear()
        self._mined_nonce = None
        self.sender.new_block()
        with self.journal.held():
            self._tick(head)

    def _tick(self, head: int | None) -> None:
        for event in self.watcher.poll(head):
            if event.key is not None:
                self._keys[event.task_id] = event.key  # until delivered (read again from the chain after a restart)
            self.journal.ensure(event.task_id, event.token_id,
                                block=event.block if event.state == TaskState.PENDING else None)
            if event.state == TaskState.PENDING:
                row = self.journal.get(event.task_id)
                if row and row.requested_block is None:
                    self.journal.update(event.task_id, requested_block=event.block)
        rows = self.journal.tasks(active_only=True)
        first_looks = self._prefetch(rows)
        self._intents = [] if self._batches else None
        self._deferred = [] if self._batches else None
        try:
            self._advance_all(rows, first_looks)
            deferred, self._deferred = self._deferred, None
            if deferred:  # their state moved this tick (e.g. an accept mined): read them all in one batch
                again = [r for r in map(self.journal.get, deferred) if r is not None and not r.terminal]
                self._advance_all(again, self._prefetch(again))
        finally:
            intents, self._intents, self._deferred = self._intents, None, None
        if intents:
            self._flush(intents)
        if self.metrics is not None and self.metrics.active:  # no monitor: no per-tick count of the journal
            self.metrics.update(self.journal.counts())

    def _advance_all(self, rows: list[TaskRow], looks: dict[int, tuple[str, object]]) -> None:
        for row in rows:
            with self._task_errors(row.task_id):
                self.advance(row, looks.get(row.task_id))

    @contextmanager
    def _task_errors(self, task_id: int):
        """A revert or a chain error stops this task for this tick, not the tick."""
        try:
            yield
        except ContractRevert as exc:
            log.info("task %d: %s (will look again)", task_id, exc.reason)
        except (ChainError, OSError) as exc:
            log.warning("task %d: %s", task_id, exc)

    def _prefetch(self, rows: list[TaskRow]) -> dict[int, tuple[str, object]]:
        """What each unfinished task needs first this tick, read in JSON-RPC batches
        (`testbed.chain.rpc.ProviderBatch`): the receipt of its journaled transaction (None: not mined yet) or its
        state. Sequential per-task reads were most of a busy Solver's time. A task whose answer is
        an error (e.g. NoSuchTask), or every task when the provider has no batches (py-evm in unit
        tests), is read one by one as before."""
        requests = [("eth_getTransactionReceipt", [row.pending_hash]) if row.pending_hash
                    else ("eth_call", [self.cti.task_call(row.task_id), "latest"]) for row in rows]
        if not requests:
            return {}
        try:
            answers = self.sender.rpc.batch(requests, allow_errors=True)
        except Exception as exc:  # no batches here, or the node is away: per-task reads will tell
            if not self._said_no_batches:
                log.info("no JSON-RPC batches (%s): reading tasks one by one", exc.__class__.__name__)
                self._said_no_batches = True
            self._batches = False
            return {}
        self._batches = True
        found: dict[int, tuple[str, object]] = {}
        for row, result in zip(rows, answers):
            if isinstance(result, RpcError):
                continue  # read on its own below (e.g. a NoSuchTask revert)
            if row.pending_hash:
                found[row.task_id] = ("receipt", None if result is None else {
                    "status": int(result["status"], 16), "blockNumber": int(result["blockNumber"], 16)})
            elif result:
                found[row.task_id] = ("task", self.cti.decode_task(row.task_id, bytes.fromhex(result[2:])))
        return found

    # ---- one task ---------------------------------------------------------------------------

    def advance(self, row: TaskRow, first_look: tuple[str, object] | None = None) -> None:
        """Move one task up to 4 steps; `first_look` (from `_prefetch`) answers the first step's read."""
        for _ in range(4):  # a few steps per tick (e.g. accepted -> encrypted -> finish sent)
            look, first_look = first_look, None
            if row.pending_hash:
                receipt = look[1] if look and look[0] == "receipt" else UNREAD
                if not self._check_pending(row, receipt=receipt):
                    return
            elif not self._act(row, look[1] if look and look[0] == "task" else None):
                return
            new = self.journal.get(row.task_id)
            if new is None or new.terminal or new == row:
                if new is not None and new.terminal:
                    self._record(new)
                return
            if new.step == J.ENCRYPTED and row.step != J.ENCRYPTED:
                first_look = ("task", self._last_task)  # only the outbox changed: the chain's view is still this
            row = new

    def _act(self, row: TaskRow, task=None) -> bool:
        """One step from the chain's view of the task (read now unless given); False when there is
        nothing to do now."""
        if task is None and self._deferred is not None:
            self._deferred.append(row.task_id)  # read with the others in the tick's second batch
            return False
        try:
            task = task or self.cti.task(row.task_id, details=False)
            self._last_task = task
        except ContractRevert as exc:
            if exc.error == "NoSuchTask":  # not visible at latest yet (or reorged away)
                return False
            raise
        if row.token_id != task.token_id or (row.consumer or task.consumer).lower() != task.consumer.lower():
            return self._adopt_chain_view(row, task)
        if row.consumer is None:
            self.journal.update(row.task_id, consumer=task.consumer)
        mine = task.solver is not None and task.solver.lower() == self.address.lower()
        state = task.state
        if state == TaskState.PENDING:
            if not self._is_solver(task.token_id):  # another account of the org serves it
                self.journal.update(row.task_id, step=J.LOST, reason="not an authorized solver of this CTI")
                return True
            if not self.cfg.claim_first:  # making the ciphertext rejects a task whose event or key is unusable
                return self._deliver(row, task, "deliver")
            problem = self._problem(self._with_key(row, task))
            if problem:
                return self._send(row, "reject", [row.task_id, problem[:200]], J.REJECT_SENT, reason=problem)
            return self._send_first_wins(row, "accept", [row.task_id], J.ACCEPT_SENT)
        if state == TaskState.ACCEPTED:
            if not mine:
                self.journal.update(row.task_id, step=J.LOST)
                return True
            try:
                return self._deliver(row, task, "finish")
            except ContractRevert as exc:
                if exc.error == "DeadlinePassed":
                    return self._reject_late(row)
                raise
        if state == TaskState.FINISHED:
            self.journal.update(row.task_id, step=J.FINISHED if mine else J.LOST)
            return True
        if state == TaskState.REJECTED and row.step == J.REJECT_SENT:
            self.journal.update(row.task_id, step=J.REJECTED)
            return True
        if state in (TaskState.CANCELLED, TaskState.EXPIRED, TaskState.REJECTED):
            self.journal.update(row.task_id, step=J.CLOSED, reason=row.reason or task.reason or state.name.lower())
            return True
        return False

    def _deliver(self, row: TaskRow, task, function: str) -> bool:
        """The next step towards `function` ("deliver" a pending task in one transaction, or "finish"
        one this Solver accepted): the ciphertext in the journal first, then the transaction naming its hash."""
        if row.step != J.ENCRYPTED or not self._ciphertext_ok(row):
            return self._encrypt(row, self._with_key(row, task))
        if row.uri != self._uri(row.task_id):  # restarted on another endpoint before finishing
            self.journal.update(row.task_id, uri=self._uri(row.task_id))
            return True
        args = [row.task_id, HexBytes(row.ct_hash), row.uri]
        if function == "deliver":
            return self._send_first_wins(row, function, args, J.FINISH_SENT)
        return self._send(row, function, args, J.FINISH_SENT)

    def _send_first_wins(self, row: TaskRow, function: str, args: list, step: str) -> bool:
        """Send a call that takes a pending task; another Solver of the org that was faster is no error."""
        try:
            return self._send(row, function, args, step)
        except ContractRevert as exc:
            if exc.error == "BadState":
                return True  # someone was faster: the next read says who
            raise

    def _reject_late(self, row: TaskRow) -> bool:
        reason = "deadline passed before delivery"
        return self._send(row, "reject", [row.task_id, reason], J.REJECT_SENT, reason=reason)

    def _adopt_chain_view(self, row: TaskRow, task) -> bool:
        """The task's consumer and token as the chain has them. A differing journal entry came from
        a TaskChanged log of a block a reorg replaced (the same request got another id there): say
        so with both values and follow the chain; a ciphertext made for the old view is made anew."""
        log.error("task %d: journal had consumer %s and token %d, the chain has consumer %s and token %d "
                  "(the event's block was replaced by a reorg); following the chain",
                  row.task_id, row.consumer, row.token_id, task.consumer, task.token_id)
        fields = {"consumer": task.consumer, "token_id": task.token_id}
        self._keys.pop(row.task_id, None)  # the key came with the replaced block's Requested log too
        if row.step == J.ENCRYPTED:
            fields |= {"step": J.ACCEPTED, "ct_hash": None}
        self.journal.update(row.task_id, **fields)
        return True

    # ---- fault injection --------------------------------------------------------------------

    def _crash(self, point: str) -> None:
        self._crash_points.passed(point)

    def _write_endpoint(self) -> None:
        data = {"url": self.endpoint, "pid": os.getpid(), "account": self.address, "org_id": self.org_id,
                "started": time.time()}
        path = Path(self.cfg.workdir) / ENDPOINT_FILE
        write_text_atomic(path, json.dumps(data, indent=1) + "\n")

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.journal.close()
