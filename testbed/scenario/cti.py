"""CTI steps of a scenario through the typed CtiClient: publish, buy, request, await delivery, feedback.

Each organization acts with its steps account (`testbed.keys.OrgAccounts`: no load, funder
or Solver signs with it) through its own nodes (a running one first; if that node stops
answering, the next of the org's nodes, never another org's). The publisher lists its
organization's Solver account as the CTI's solver. Ids (tokens, tasks) are taken from
receipts only once confirmed for the engine and checked against the chain (CtiClient).
Delivery itself is the Solver's job (testbed.scenario.solvers); this module only waits for
the task to be Finished on-chain.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path

from eth_account import Account

from testbed.errors import TestbedError

TERMINAL_NOT_DELIVERED = ("CANCELLED", "EXPIRED", "REJECTED")


class DeliveryFailed(TestbedError):
    """A task did not reach Finished in time; the message carries the evidence."""


class CtiActions:
    def __init__(self, net, deployment, emit, views=None, stop: threading.Event | None = None,
                 event_files: dict[str, str] | None = None) -> None:
        self.net, self.deployment, self.emit, self.views = net, deployment, emit, views
        self.event_files = event_files or {}  # publish alias -> the MISP event file it lists
        self.stop = stop or threading.Event()  # set: the run is ending early, stop waiting for deliveries
        self.ctis: dict[str, int] = {}  # alias -> token id
        self.published_block: dict[str, int] = {}  # alias -> block of its listing
        self.tasks: dict[str, dict] = {}  # alias -> {id, org, cti, requested_block, ...}
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()

    def client(self, org: str):
        from testbed.cti import CtiClient, connect
        from testbed.engines import engine_of

        with self._lock:
            if org not in self._clients:
                key = self.net.keys.of(org).steps.private_key
                self._clients[org] = CtiClient(connect(self.net.org_rpc_urls(org)), self.deployment, key, timeout=90,
                                               confirmations=engine_of(self.net.spec).confirmations)
            return self._clients[org]

    def client_with(self, org: str, cti: str):
        """The org's client once its node has the block that listed `cti`: the publisher's node
        answered the listing, the buyer's own node may still be a block behind (its gas estimate
        would revert 'no such token')."""
        from testbed.chain.wait import wait_for_block

        client = self.client(org)
        wait_for_block(client.w3, self.published_block.get(cti, 0), timeout=60)
        return client

    def org_ids(self) -> dict[str, int]:
        """Organization name -> on-chain org id (founding orgs are numbered in spec order)."""
        orgs = self.client(self.net.members[0].name).orgs()
        return {o.name: o.org_id for o in orgs}

    def publish(self, step) -> None:
        from testbed.cti.misp import parse_event
        from testbed.scenario.solvers import intel_for, store_event

        accounts = [self.net.keys.of(step.org).solver.address]
        event_file = getattr(step, "event", None) and self.event_files.get(step.alias)
        if event_file:
            raw = Path(event_file).read_bytes()
            title = step.title or parse_event(raw).info or "indicators"
            misp_uuid, content = store_event(self.net, step.org, raw)
        else:
            title = step.title or "indicators"
            intel = intel_for(self.net, step.org, f"{title} ({step.alias})")
            misp_uuid, content = intel or (str(uuid.uuid4()), hashlib.sha256(f"{step.alias}:{title}".encode()).digest())
        sent = self.client(step.org).publish(misp_uuid, title[:200], content, step.price_wei, step.supply,
                                             solvers=accounts)
        self.ctis[step.alias] = sent.result
        self.published_block[step.alias] = sent.block
        self.emit("cti_published", org=step.org, cti=step.alias, token=sent.result, block=sent.block, tx=sent.tx_hash)

    def buy(self, step) -> None:
        sent = self.client_with(step.org, step.cti).buy(self.ctis[step.cti], step.amount)
        self.emit("cti_bought", org=step.org, cti=step.cti, amount=step.amount, block=sent.block, tx=sent.tx_hash)

    def request(self, step) -> None:
        key = self.net.keys.of(step.org).steps.private_key
        public = Account.from_key(key)._key_obj.public_key.to_bytes()  # 64 bytes: the Solver encrypts to it
        sent = self.client_with(step.org, step.cti).request(self.ctis[step.cti], public)
        self.tasks[step.alias] = {"id": sent.result, "org": step.org, "cti": step.cti, "requested_block": sent.block,
                                  "requested_time": time.time(), "tx": sent.tx_hash}
        if self.views is not None:
            self.views.watch_task(sent.result)
        self.emit("task_requested", org=step.org, cti=step.cti, task=step.alias, task_id=sent.result, block=sent.block)

    def task_state(self, alias: str, org: str | None = None) -> str:
        info = self.tasks[alias]
        return self.client(org or info["org"]).task(info["id"], details=False).state.name

    def await_delivery(self, step) -> None:
        deadline = time.monotonic() + step.timeout
        waiting = list(step.tasks)
        states: dict[str, str] = {}
        while waiting:
            for alias in list(waiting):
                try:
                    states[alias] = self.task_state(alias)
                except Exception as exc:  # a node down for a moment: ask again
                    states[alias] = f"unknown ({exc.__class__.__name__})"
                if states[alias] == "FINISHED":
                    waiting.remove(alias)
                    self.tasks[alias]["finished_time"] = time.time()
                    self.emit("task_delivered", task=alias, task_id=self.tasks[alias]["id"],
                              seconds=round(time.time() - self.tasks[alias]["requested_time"], 2))
                elif states[alias] in TERMINAL_NOT_DELIVERED:
                    raise DeliveryFailed(f"task {alias} (id {self.tasks[alias]['id']}) ended {states[alias]}, not FINISHED")
            if waiting and time.monotonic() > deadline:
                detail = ", ".join(f"{a} (id {self.tasks[a]['id']}) is {states.get(a)}" for a in waiting)
                raise DeliveryFailed(f"not delivered within {step.timeout:.0f}s: {detail}")
            if waiting and self.stop.wait(0.5):
                raise DeliveryFailed("the run was interrupted while waiting for " + ", ".join(waiting))

    def feedback(self, step) -> None:
        info = self.tasks[step.task]
        sent = self.client(info["org"]).rate(info["id"], step.rating, step.comment)
        self.emit("feedback_given", task=step.task, task_id=info["id"], rating=step.rating, block=sent.block)
