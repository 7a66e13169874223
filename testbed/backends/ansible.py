"""Ansible backend: every organization's nodes run on that organization's member host,
stood up over SSH by the playbooks in infra/ansible/ through ansible-runner.

- prepare: member hosts up (here: lab hosts, one sshd per org namespace, see `ssh_lab`;
  elsewhere: the hosts listed in $TESTBED_ANSIBLE_HOSTS), the inventory generated from the
  spec (one group per organization), then site.yml lays out the client binary (or pinned
  image), genesis, keys (0600) and node config on every host;
- run / start / stop / kill / pause / resume: node.yml with one action for one node; start
  installs the service (systemd unit, or a supervised background process with a pid file
  where there is no systemd), starts it and waits for JSON-RPC eth_blockNumber;
- is_alive: one SSH command (multiplexed) reading the node's /proc entry on its host;
- partition / delay / heal: on lab hosts, the netns backend's faults; not on remote hosts;
- teardown: teardown.yml (stop every node, remove services; data kept), then the lab hosts.

Every playbook run keeps its ansible-runner artifacts in `<state>/runs/ansible/<ident>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

from testbed.backends.ansible_inventory import MemberHost, inventory, load_hosts_file, remote_argv, runtime_of
from testbed.backends.ansible_runs import AnsibleRunner, PlaybookResult, PlaybookRunner, require
from testbed.backends.base import NodeProcess
from testbed.backends.images import image_for
from testbed.backends.ssh_lab import LabHosts, ssh_argv
from testbed.clients.base import NodePlan
from testbed.errors import BackendError, NotSupportedError

HOSTS_ENV = "TESTBED_ANSIBLE_HOSTS"
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class AnsibleBackend:
    name = "ansible"

    def __init__(self, network: str = "", state_dir: Path | None = None, *, runner: PlaybookRunner | None = None,
                 lab: LabHosts | None = None, hosts_file: str | None = None) -> None:
        if state_dir is None:
            raise BackendError("the ansible backend needs the network's state directory")
        self.network = network
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "ansible"
        self.hosts_file = Path(hosts_file or os.environ.get(HOSTS_ENV) or "") if (hosts_file or os.environ.get(HOSTS_ENV)) else None
        self.lab = None if self.hosts_file else (lab or LabHosts(network, self.state_dir))
        self.runner = runner or AnsibleRunner(self.dir, self.state_dir / "runs" / "ansible")
        self.shares_filesystem = self.lab is not None  # lab hosts are namespaces of this machine
        self.local_processes = False  # commands run on the hosts, with the binary shipped there
        self.resource_source = "prometheus"  # the figures come from the hosts' nodes, not from pids of this machine
        self.progress: Progress = _quiet
        self._ready = False
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        self.control_dir = Path(tempfile.gettempdir()) / f"tbssh-{digest}"  # short: unix socket paths are <= 108 bytes

    def attach_progress(self, progress: Progress) -> None:
        self.progress = progress

    # ---- what the state dir says --------------------------------------------------------------
    @property
    def inventory_file(self) -> Path:
        return self.dir / "inventory" / "hosts.yml"

    def _spec(self) -> dict:
        return json.loads((self.state_dir / "spec.json").read_text())

    def _network(self) -> dict:
        return json.loads((self.state_dir / "network.json").read_text())

    def _orgs(self) -> list[str]:
        return [o["name"] for o in self._spec()["organizations"]]

    def _hosts(self) -> list[MemberHost]:
        orgs = self._orgs()
        if self.lab is not None:
            return [MemberHost(ssh=h, root=str(self.lab.host_root(h.org)), service_manager="supervised")
                    for h in self.lab.hosts(orgs)]
        return load_hosts_file(self.hosts_file, orgs, self.network)

    def _host(self, org: str) -> MemberHost:
        for host in self._hosts():
            if host.org == org:
                return host
        raise BackendError(f"organization {org!r} has no member host in network {self.network!r}")

    def _org_of(self, node: str) -> str:
        for entry in self._network()["nodes"]:
            if entry["name"] == node:
                return entry["org"]
        raise BackendError(f"network {self.network!r} has no node {node!r}")

    def _node_dir(self, host: MemberHost, node: str) -> str:
        return f"{host.root.rstrip('/')}/nodes/{node}"

    # ---- Backend protocol ---------------------------------------------------------------------
    def runs_image_of(self, client: str) -> bool:
        return runtime_of(client) == "container"  # geth and GoQuorum ship as the toolchain's binary

    def host_for(self, org_index: int, node_index: int) -> str:
        """Every node of an organization runs on the organization's one member host."""
        if self.lab is not None:
            return self.lab.address(org_index)
        entries = yaml.safe_load(self.hosts_file.read_text()) or []
        if org_index >= len(entries):
            raise BackendError(f"{self.hosts_file} lists {len(entries)} hosts; organization #{org_index + 1} has none")
        return str(entries[org_index]["address"])

    def prepare(self, org_names: list[str]) -> None:
        if self.lab is not None:
            self.progress(f"starting {len(org_names)} lab member hosts (a namespace and an sshd per organization)")
            self.lab.up(org_names)
        self._lay_out()

    def _lay_out(self) -> None:
        hosts = self._hosts()
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        document = inventory(network=self._network(), spec=self._spec(), hosts=hosts, state_dir=self.state_dir,
                             control_dir=self.control_dir)
        self.inventory_file.parent.mkdir(parents=True, exist_ok=True)
        self.inventory_file.write_text(yaml.safe_dump(document, sort_keys=False))
        self.progress(f"laying out {len(hosts)} member hosts over SSH with ansible (inventory {self.inventory_file})")
        require(self._play("site.yml", "site", extravars={}, timeout=600), "ansible site.yml (lay out member hosts)")
        self._ready = True

    def _ensure_ready(self) -> None:
        """After a teardown (or in a new harness process), bring lab hosts back and lay them out again."""
        if self._ready:
            return
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        if self.lab is not None and not self.lab.is_up(self._orgs()):
            self.prepare(self._orgs())
        elif not self.inventory_file.exists():
            self._lay_out()
        self._ready = True

    def _play(self, playbook: str, label: str, *, extravars: dict, limit: str | None = None,
              timeout: float = 300) -> PlaybookResult:
        ident = f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{os.urandom(3).hex()}"
        return self.runner.run(playbook, inventory=self.inventory_file, extravars=extravars, limit=limit,
                               ident=ident, timeout=timeout, progress=self.progress)

    def _node_play(self, node: str, action: str, timeout: float = 300, **extravars) -> PlaybookResult:
        org = self._org_of(node)
        result = self._play("node.yml", f"{action}-{node}", extravars={"node": node, "action": action, **extravars},
                            limit=org, timeout=timeout)
        return require(result, f"ansible node.yml {action} {node} on host {org}")

    # ---- Locust workers on the member hosts (testbed.load.distributed) --------------------------
    def worker_master_address(self) -> str | None:
        """An address of this controller the member hosts reach: the lab's bridge; None for an operator's
        hosts (the load's master_bind names it)."""
        return self.lab.netns.plan.bridge_address if self.lab is not None else None

    def start_load_workers(self, master: str, counts: dict[str, int], *, python: str, package: str = "") -> list[int]:
        """Start `counts[org]` Locust workers on each org's host (locust-workers.yml); their pids."""
        self._ensure_ready()
        result = require(self._play("locust-workers.yml", "workers-start", timeout=600, extravars={
            "action": "start", "locust_master": master, "locust_worker_counts": counts, "locust_python": python,
            "testbed_package": package}), "ansible locust-workers.yml start")
        return [int(pid) for line in result.messages.get("testbed_worker_pids", [])
                for pid in line.partition(":")[2].split(",") if pid.strip()]

    def stop_load_workers(self, log_dest: Path) -> None:
        """End any worker still running on the hosts and copy their logs to `log_dest/<host>/`."""
        require(self._play("locust-workers.yml", "workers-stop", timeout=300, extravars={
            "action": "stop", "locust_log_dest": str(log_dest)}), "ansible locust-workers.yml stop")

    def _remote(self, node: NodePlan, argv: list[str]) -> list[str]:
        spec, host = self._spec(), self._host(node.org)
        runtime = runtime_of(spec["client"])
        return remote_argv(argv, state_dir=self.state_dir, binary=self._network()["binary"], host=host, runtime=runtime,
                           image=image_for(spec["client"], spec.get("image")), node=node.name, network=self.network)

    def run(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
        self._ensure_ready()
        self._node_play(node.name, "init", timeout=max(timeout, 60) + 60, node_argv=self._remote(node, argv), node_env=env)

    def start(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, marker: str) -> NodeProcess:
        self._ensure_ready()
        result = self._node_play(node.name, "start", node_argv=self._remote(node, argv), node_env=env,
                                 node_log_dest=str(log_path))
        pids = result.messages.get("testbed_node_pid") or []
        if not pids or not pids[-1].strip().isdigit():
            raise BackendError(f"ansible started {node.name} but reported no pid", hint=f"see {result.artifact_dir}")
        host = self._host(node.org)
        return NodeProcess(name=node.name, pid=int(pids[-1]), marker=self._node_dir(host, node.name) + "/")

    def is_alive(self, proc: NodeProcess) -> bool:
        try:
            host = self._host(self._org_of(proc.name))
        except (OSError, ValueError, BackendError):
            return False
        command = (f"tr '\\0' ' ' < /proc/{proc.pid}/cmdline && echo && "
                   f"sed 's/.*) //' /proc/{proc.pid}/stat | cut -d' ' -f1")
        control = self.control_dir if self.control_dir.is_dir() else None  # none after teardown: nothing to leave behind
        try:
            out = subprocess.run(ssh_argv(host.ssh, command, control), capture_output=True, text=True,
                                 timeout=20, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
        lines = out.stdout.splitlines()
        return out.returncode == 0 and len(lines) >= 2 and proc.marker in lines[0] and lines[1].strip() not in ("Z", "X")

    def stop(self, proc: NodeProcess, timeout: float = 20.0) -> None:
        if not self.is_alive(proc):
            return
        self._node_play(proc.name, "stop", timeout=timeout + 120, node_pid=proc.pid, testbed_stop_timeout=int(timeout),
                        node_log_dest=str(self.state_dir / "nodes" / proc.name / "node.log"))

    def kill(self, proc: NodeProcess) -> None:
        self._node_play(proc.name, "kill", node_pid=proc.pid,
                        node_log_dest=str(self.state_dir / "nodes" / proc.name / "node.log"))

    def pause(self, proc: NodeProcess) -> None:
        self._node_play(proc.name, "pause", node_pid=proc.pid)

    def resume(self, proc: NodeProcess) -> None:
        self._node_play(proc.name, "resume", node_pid=proc.pid)

    # ---- faults: the lab's namespaces can; remote hosts are not ours to cut ---------------------
    def _netns(self):
        if self.lab is None:
            raise NotSupportedError("the ansible backend does not cut or delay links between remote member hosts",
                                    hint="use the lab hosts (unset TESTBED_ANSIBLE_HOSTS) or 'backend: netns'")
        return self.lab.netns

    def partition(self, groups: list[list[str]]) -> None:
        self._netns().partition(groups)

    def delay(self, org: str, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> None:
        self._netns().delay(org, delay_ms, jitter_ms, loss_pct)

    def heal(self) -> None:
        if self.lab is not None:
            self.lab.netns.heal()

    # ---- teardown -------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Stop every node and remove its service on every host (data kept), then the lab hosts."""
        problem: BackendError | None = None
        reachable = self.inventory_file.exists() and (self.lab is None or self.lab.is_up(self._orgs()))
        if reachable:
            result = self._play("teardown.yml", "teardown", extravars={"purge": False}, timeout=300)
            if not result.ok:
                problem = BackendError(f"ansible teardown.yml failed: {result.failures[0] if result.failures else result.status}",
                                       hint=f"ansible run artifacts in {result.artifact_dir}")
        self._close_ssh()
        if self.lab is not None:
            self.lab.down()
        self._ready = False
        if problem:
            raise problem

    def _close_ssh(self) -> None:
        """End the multiplexing SSH masters (ours and ansible's share one control dir)."""
        if not self.control_dir.exists():
            return
        try:
            hosts = self._hosts()
        except (OSError, ValueError, BackendError):
            hosts = []
        for host in hosts:
            argv = ssh_argv(host.ssh, "true", self.control_dir)
            subprocess.run([*argv[:-2], "-O", "exit", argv[-2]], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        shutil.rmtree(self.control_dir, ignore_errors=True)
