"""Distributed load: a Locust master and its workers (processes here, hosts elsewhere).

Locust's own distributed mode does the distributing: the master runs the rate shape and
hands users to the workers, the workers run them and report Locust's request stats. The
testbed adds a few custom messages (Locust's `register_message` / `send_message`):

  master -> worker  testbed_setup      index, the organizations' nodes and RPC URLs, chain id,
                                       recipients, accounts per organization, batch size, per-user rate
                                       (sent again every 5 s until the worker answers)
  worker -> master  testbed_accounts   the addresses of the accounts it made: private keys never
                                       leave the worker; the master funds the addresses
  master -> worker  testbed_presign    the worker's share of a rate and seconds to sign ahead
  worker -> master  testbed_presigned
  master -> worker  testbed_rate       the run's target rate and the users the shape asked for:
                                       each user offers rate / users, wherever it runs
  worker -> master  testbed_rows       every 0.5 s: the rows of the batches it sent (submitted or
                                       rejected), its own CPU/RSS samples, its late-signing count
  master -> worker  testbed_flush      after the users stopped: finish in-flight sends, send the last rows
  worker -> master  testbed_flushed

The master keeps the one recorder and the block watcher, so a distributed run writes the same
raw records as a single-process one (txs.jsonl, blocks.jsonl, ...); rows may reach it after the
block that holds them (the recorder's `late_rows`). Worker resources appear as `generator-w<i>`.
Workers run where the load options say: processes on this machine started by the master
(`python -m testbed.load` with a "worker" request, their logs in the run directory); on an
ansible network's member hosts, started over SSH by infra/ansible/locust-workers.yml (the
master listens on an address the hosts reach); or anywhere someone starts that command, the
master waiting for the expected number to connect. Transfer users only:
CTI users need member accounts admitted through the contracts, which stays single-process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import gevent

from testbed.chain.txs import FeeRules, TxRecord
from testbed.clients import fee_rules
from testbed.errors import TestbedError
from testbed.load.accounts import AccountRef, fund_accounts, new_account
from testbed.load.address import parse_master
from testbed.load.context import INCLUSION, SenderContext, presign
from testbed.poll import poll_until
from testbed.resources import ResourceSampler
from testbed.runs import RunDir

Progress = Callable[[str], None]
ROW_FIELDS = ("hash", "org", "node", "sender", "nonce", "kind", "submit_time", "status", "error")
FORWARD_INTERVAL = 0.5  # seconds between a worker's row messages
DISTRIBUTED_USERS = ("transfers",)
RESEND_INTERVAL = 5.0  # seconds between set-up messages to a worker that has not answered


def worker_command(master: str) -> list[str]:
    """The command line of one worker process, here or on another host."""
    return [sys.executable, "-m", "testbed.load", json.dumps({"command": "worker", "master": master})]


# ---- where workers run ---------------------------------------------------------------------------

class LocalProcesses:
    """Worker processes on this machine, started by the master (their logs: <run>/worker-<n>.log)."""

    def __init__(self, count: int, run: RunDir) -> None:
        self.count, self.run, self.run_root = count, run, run.root
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []

    def start(self, master: str) -> list[int]:
        for n in range(self.count):
            log = self.run.log_stream(f"worker-{n}.log")
            self._logs.append(log)
            self._procs.append(subprocess.Popen(worker_command(master), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL))
        return [p.pid for p in self._procs]

    def check(self) -> None:
        for n, proc in enumerate(self._procs):
            if proc.poll() is not None:
                raise TestbedError(f"Locust worker {n} exited with {proc.returncode}{self.log_tail(n)}")

    def log_tail(self, n: int | None = None) -> str:
        paths = [self.run_root / f"worker-{n}.log"] if n is not None else sorted(self.run_root.glob("worker-*.log"))
        for path in paths:
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                return f" ({path.name}: {lines[-1][:200]})"
        return ""

    def stop(self) -> None:
        """They quit on the master's quit message; whatever has not after 15 s is killed, by pid."""
        deadline = time.monotonic() + 15
        for proc in self._procs:
            poll_until(lambda: proc.poll() is not None, timeout=deadline - time.monotonic(), interval=0.1,
                       sleep=gevent.sleep)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for log in self._logs:
            log.close()


class MemberHosts:
    """Worker processes on an ansible network's member hosts, started and stopped by
    infra/ansible/locust-workers.yml (logs copied back to <run>/workers/<host>/). The playbooks run
    in a child process (testbed.load.ansible_child): ansible-runner hangs under gevent."""

    def __init__(self, network: str, count: int, run_root: Path, *, python: str = "", package: str = "") -> None:
        self.network, self.count, self.run_root, self.python, self.package = network, count, run_root, python, package

    def _call(self, request: dict) -> dict:
        proc = subprocess.run([sys.executable, "-m", "testbed.load.ansible_child", json.dumps(request)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            raise TestbedError(f"locust-workers.yml {request['action']} failed (exit {proc.returncode}): {tail[0][:300]}")
        return json.loads(lines[-1])

    def start(self, master: str) -> list[int]:
        return self._call({"action": "start", "network": self.network, "master": master, "count": self.count,
                           "python": self.python, "package": self.package})["pids"]

    def check(self) -> None:
        """A worker that died on a host shows as one that never connects or answers."""

    def log_tail(self, n: int | None = None) -> str:
        return f" (worker logs: the hosts' <testbed_root>/locust/, copied to {self.run_root / 'workers'} at the end)"

    def stop(self) -> None:
        self._call({"action": "stop", "network": self.network, "log_dest": str(self.run_root / "workers")})


# ---- master ----------------------------------------------------------------------------------

class WorkerPool:
    """The master's side: workers connected, their accounts funded, their rows merged into `ctx.recorder`.

    `launcher` starts the workers (LocalProcesses here, MemberHosts through Ansible, or None:
    `expect` workers started by someone else connect on their own).
    """

    def __init__(self, env, ctx, net, run, *, expect: int, launcher=None, bind_host: str = "127.0.0.1",
                 bind_port: int = 0, connect_timeout: float = 90.0, progress: Progress = lambda _: None,
                 runner=None) -> None:
        self.env, self.ctx, self.net, self.run = env, ctx, net, run  # run: the run directory (testbed.runs.RunDir)
        self.expect, self.launcher, self.connect_timeout, self.progress = expect, launcher, connect_timeout, progress
        ctx.recorder.late_rows = True
        # `runner`: a master Locust already made (plain `locust --master` with testbed/load/locustfile.py)
        self.runner = runner or env.create_master_runner(master_bind_host=bind_host, master_bind_port=bind_port)
        host = self.runner.master_bind_host if self.runner.master_bind_host not in (None, "*") else bind_host
        self.address = f"{host}:{self.runner.server.port}"
        self.replies: dict[str, dict[int, dict]] = {"testbed_accounts": {}, "testbed_presigned": {},
                                                    "testbed_flushed": {}}
        self._signed_late: dict[int, int] = {}
        self._broadcaster: gevent.Greenlet | None = None
        self._workers: list[str] = []  # Locust client ids; messages go to each by id (see `_send`)
        for kind in self.replies:
            self.runner.register_message(kind, self._reply)
        self.runner.register_message("testbed_rows", self._rows)
        pids = launcher.start(self.address) if launcher is not None else []
        run.write_json("workers.json", {"master": self.address, "expected": expect, "started_pids": pids,
                                        "where": type(launcher).__name__ if launcher is not None else "started elsewhere"})

    # ---- set-up ------------------------------------------------------------------------------
    def start(self, accounts_per_org: int) -> "WorkerPool":
        self._wait_connected()
        orgs = {org: [group_node.name, group_node.rpc_url] for org, group_node in self._org_nodes().items()}
        self._workers = list(self.runner.clients)
        setup = {"orgs": orgs, "chain_id": self.net.spec.chain_id, "fees": asdict(fee_rules(self.net.spec)),
                 "recipient": self.ctx.recipient, "accounts_per_org": accounts_per_org,
                 "batch_size": self.ctx.batch_size, "per_user_rate": self.ctx.per_user_rate}

        def send_setup(client_id: str) -> None:
            self.runner.send_message("testbed_setup", {"index": self.runner.get_worker_index(client_id), **setup},
                                     client_id)

        answers = self._wait("testbed_accounts", 60, resend=send_setup)
        refs: dict[str, list[AccountRef]] = {org: [] for org in orgs}
        for answer in answers.values():
            for org, address in answer["accounts"]:
                node, url = orgs[org]
                refs[org].append(AccountRef(org=org, node=node, rpc_url=url, address=address))
        fund_accounts(self.net, refs, progress=self.progress)
        self.ctx.remote_users = sum(len(group) for group in refs.values())
        self.progress(f"load: {self.expect} Locust workers connected to the master at {self.address}, "
                      f"{self.ctx.remote_users} accounts funded")
        self._broadcaster = gevent.spawn(self._broadcast_rate)
        return self

    def _org_nodes(self) -> dict:
        return {org: self.net.first_node(org) for org in self.ctx.recipient}

    def _wait_connected(self) -> None:
        def connected() -> bool:
            if self.runner.worker_count >= self.expect:
                return True
            self._check_processes()
            return False

        poll_until(connected, timeout=self.connect_timeout, interval=0.1, sleep=gevent.sleep,
                   error=lambda: TestbedError(f"only {self.runner.worker_count} of {self.expect} Locust workers "
                                              f"connected to {self.address} within {self.connect_timeout:.0f}s"
                                              f"{self._log_tail()}",
                                              hint="check that the workers can reach the master's address"))

    def _check_processes(self) -> None:
        if self.launcher is not None:
            self.launcher.check()

    def _log_tail(self) -> str:
        return self.launcher.log_tail() if self.launcher is not None else ""

    def _wait(self, kind: str, timeout: float, resend: Callable[[str], None] | None = None) -> dict[int, dict]:
        """Until every worker answered `kind`. `resend(client_id)`, if given, asks each worker at once and
        again every RESEND_INTERVAL until it answers: a Locust worker reports ready when its runner is
        made, before a locustfile's init handler registers the testbed's messages, and Locust drops a
        message of a type nobody registered ("Unknown message type")."""
        asked = float("-inf")

        def answered() -> bool:
            nonlocal asked
            if len(self.replies[kind]) >= self.expect:
                return True
            self._check_processes()
            if resend is not None and time.monotonic() - asked >= RESEND_INTERVAL:
                asked = time.monotonic()
                for client_id in self._workers:
                    if self.runner.get_worker_index(client_id) not in self.replies[kind]:
                        resend(client_id)
            return False

        poll_until(answered, timeout=timeout, interval=0.05, sleep=gevent.sleep,
                   error=lambda: TestbedError(f"{len(self.replies[kind])} of {self.expect} Locust workers answered "
                                              f"{kind} within {timeout:.0f}s{self._log_tail()}"))
        answers, self.replies[kind] = self.replies[kind], {}
        return answers

    # ---- messages ------------------------------------------------------------------------------
    def _reply(self, environment, msg, **_) -> None:
        self.replies[msg.type][msg.data["index"]] = msg.data

    def _rows(self, environment, msg, **_) -> None:
        data = msg.data
        recorder, fire = self.ctx.recorder, self.env.events.request.fire
        for values in data["rows"]:
            item = dict(zip(ROW_FIELDS, values))
            row = TxRecord(item["hash"], item["org"], item["node"], item["sender"], item["nonce"], item["kind"],
                           item["submit_time"], status="submitted")
            row.error = item["error"]
            if recorder.submitted(row):  # its block came first: included now, its event fires now
                fire(request_type=INCLUSION, name=row.kind, response_time=row.latency * 1000, response_length=0,
                     context={"block": row.included_block}, exception=None)
            elif item["status"] == "rejected":
                recorder.reject(row, item["error"])
        recorder.resources += data["resources"]
        self._signed_late[data["index"]] = data["signed_late"]

    def _send(self, kind: str, data: dict | None = None) -> None:
        """To every worker by id: Locust's master forgets a worker between its 'stopped' and 'ready'
        reports (stop_timeout later), and a broadcast would skip it."""
        for client_id in self._workers:
            self.runner.send_message(kind, data, client_id)

    def _broadcast_rate(self) -> None:
        sent = None
        while True:
            state = (self.ctx.target_rate, self.ctx.target_users)
            if state != sent:
                self._send("testbed_rate", {"rate": state[0], "users": state[1]})
                sent = state
            gevent.sleep(0.1)

    # ---- the generator interface (same as runner.InProcess) ---------------------------------------
    def presign(self, rate: float, seconds: float) -> float:
        if seconds <= 0 or rate <= 0:
            return 0.0
        started = time.perf_counter()
        self._send("testbed_presign", {"rate": rate / self.expect, "seconds": seconds})
        self._wait("testbed_presigned", 120)
        return time.perf_counter() - started

    def stop_users(self, timeout: float = 30.0) -> None:
        """Locust's own 'stop' to every worker, then wait until they report no user running (what a
        master's stop does, for a plain `locust --master` whose run-time limit quits without it)."""
        from locust.rpc import Message

        for client_id in self._workers:
            self.runner.server.send_to_client(Message("stop", None, client_id))
        poll_until(lambda: self.runner.user_count == 0, timeout=timeout, interval=0.1, sleep=gevent.sleep)

    def flush(self) -> None:
        """After the users stopped: every worker's in-flight sends done and its last rows received."""
        self._send("testbed_flush")
        self._wait("testbed_flushed", 60)

    def signed_late(self) -> int:
        return sum(self._signed_late.values())

    def close(self) -> None:
        """After Locust's quit message: end whatever worker the launcher started and is still running."""
        if self._broadcaster is not None:
            self._broadcaster.kill(block=False)
        if self.launcher is not None:
            self.launcher.stop()


# ---- worker ----------------------------------------------------------------------------------

class _RowOutbox:
    """A worker's recorder: rows are settled by the sender and forwarded, never kept."""

    def submitted(self, row: TxRecord) -> bool:
        return False

    def reject(self, row: TxRecord, error: str) -> None:
        row.status, row.error = "rejected", error


class WorkerContext(SenderContext):
    """A worker's users' context: its own accounts (made here), pacing to its share of the run's rate."""

    def __init__(self, environment, setup: dict) -> None:
        fees = FeeRules(**setup["fees"])
        accounts = {org: [new_account(org, node, url, setup["chain_id"], fees) for _ in range(setup["accounts_per_org"])]
                    for org, (node, url) in setup["orgs"].items()}
        super().__init__(environment, _RowOutbox(), accounts, setup["recipient"], batch_size=setup["batch_size"],
                         per_user_rate=setup["per_user_rate"])
        self.index = setup["index"]
        self.outbox: list[TxRecord] = []
        self.samples: list[dict] = []

    def current_rate(self) -> float:
        users = self.environment.runner.user_count if self.environment.runner else 0
        if self.target_rate is None or not self.target_users:
            return users * self.per_user_rate
        return self.target_rate * users / self.target_users  # this worker's users' share

    def settled(self, rows: list[TxRecord]) -> None:
        self.outbox.extend(rows)

    def forward(self, runner) -> None:
        rows, self.outbox = self.outbox, []
        samples, self.samples = self.samples, []
        runner.send_message("testbed_rows", {
            "index": self.index, "rows": [[getattr(r, f) for f in ROW_FIELDS] for r in rows],
            "resources": samples, "signed_late": self.signed_late()})


class Worker:
    """Message handlers and background greenlets of one worker process."""

    def __init__(self, env, runner) -> None:
        self.env, self.runner = env, runner
        self.ctx: WorkerContext | None = None
        self._greenlets: list[gevent.Greenlet] = []
        for kind, handler in (("testbed_setup", self._setup), ("testbed_presign", self._presign),
                              ("testbed_rate", self._rate), ("testbed_flush", self._flush)):
            runner.register_message(kind, handler, concurrent=kind != "testbed_rate")

    def _setup(self, environment, msg, **_) -> None:
        """Make the accounts (once: the master repeats its set-up until it hears back) and send their addresses."""
        if self.ctx is None:
            self.ctx = WorkerContext(self.env, msg.data)
            self.env.testbed = self.ctx
            self._greenlets = [gevent.spawn(self._forward), gevent.spawn(self._sample)]
        self.runner.send_message("testbed_accounts", {
            "index": self.ctx.index, "accounts": [[a.org, a.address] for a in self.ctx.accounts()]})

    def _presign(self, environment, msg, **_) -> None:
        # half again the even share per account: Locust's dispatcher may give this worker a user more
        seconds = presign(self.ctx, msg.data["rate"], msg.data["seconds"] * 1.5)
        self.runner.send_message("testbed_presigned", {"index": self.ctx.index, "seconds": seconds})

    def _rate(self, environment, msg, **_) -> None:
        if self.ctx is not None:
            self.ctx.target_rate, self.ctx.target_users = msg.data["rate"], msg.data["users"]

    def _flush(self, environment, msg, **_) -> None:
        self.ctx.wait_inflight(30)
        self.ctx.forward(self.runner)
        self.runner.send_message("testbed_flushed", {"index": self.ctx.index})

    def _forward(self) -> None:
        while True:
            gevent.sleep(FORWARD_INTERVAL)
            self.ctx.forward(self.runner)

    def _sample(self) -> None:
        sampler = ResourceSampler(lambda: {f"generator-w{self.ctx.index}": os.getpid()})
        sampler.sample_now()  # starts the CPU measurement
        while True:
            gevent.sleep(1.0)
            self.ctx.samples += sampler.sample_now()

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=True, timeout=5)


def run_worker(master: str, progress: Progress) -> int:
    """One worker process: connect to the master at HOST:PORT, serve until it says quit."""
    host, port = parse_master(master, "worker: master address")
    logging.basicConfig(level=os.environ.get("TESTBED_WORKER_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from locust.env import Environment  # a load entry point: Locust patches with gevent here

    from testbed.load.users import TransferUser

    env = Environment(user_classes=[TransferUser], stop_timeout=10)
    try:
        runner = env.create_worker_runner(host, port)
    except ConnectionError as exc:
        raise TestbedError(f"worker: no Locust master answers at {master}: {exc}") from None
    worker = Worker(env, runner)
    progress(f"worker {runner.worker_index} connected to {master}")
    runner.greenlet.join()
    worker.stop()
    return 0
