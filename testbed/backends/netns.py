"""Network-namespace backend: one namespace per organization, joined by a bridge.

Each organization's nodes (and its Solver) run inside the organization's namespace via
`ip netns exec` (which execs, so the recorded pid is the node's own). The bridge lives in
the root namespace with the first address of the network's block, so the harness reaches
every node's RPC directly. Addresses and names: see `netns_plan`.

Faults:
- partition: blackhole routes inside each namespace towards the other groups' /24s
  (each side drops what it sends, so the cut is symmetric; the harness keeps access);
- delay/jitter/loss: tc netem on the org's veth (its egress, so every round trip with
  that org grows by delay_ms); on kernels built without netem, an NFQUEUE delayer
  (`nfqueue_delay`) behind one iptables rule does the same;
- crash/pause/restart: signals by pid, as on the local backend.

Everything created (namespaces, links, routes, qdiscs, iptables rules, delayer pids) is
recorded in `<state_dir>/netns.json` *before* it is created, so `teardown()` removes it
all, also from a new harness process. Teardown also sweeps names derived from this
network's hash, so a lost record leaves nothing behind either.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from testbed.backends import process
from testbed.backends.base import NodeProcess
from testbed.backends.netns_plan import NetnsPlan, block_of, choose_block
from testbed.clients.base import NodePlan
from testbed.errors import BackendError, NotSupportedError
from testbed.poll import poll_until
from testbed.state import write_json_atomic

STATE_FILE = "netns.json"


def require_root() -> None:
    if os.geteuid() != 0:
        raise BackendError("the netns backend needs root (it creates network namespaces, links and routes); "
                           "run the testbed as root, or use 'backend: local'")


def sh(argv: list[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BackendError(f"'{argv[0]}' is not installed; the netns backend needs it") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"'{' '.join(argv)}' took longer than {timeout:.0f}s") from None
    if check and result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise BackendError(f"'{' '.join(argv)}' failed: {reason[0] if reason else f'exit code {result.returncode}'}")
    return result


def _root_addresses() -> list[tuple[str, str]]:
    """(interface, address) of every IPv4 address in the root namespace."""
    out = sh(["ip", "-j", "-4", "addr", "show"], check=False).stdout or "[]"
    return [(link["ifname"], a["local"]) for link in json.loads(out) for a in link.get("addr_info", [])]


def _disable_ipv6(ifname: str) -> None:
    path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    try:
        path.write_text("1")
    except OSError:
        pass


class NetnsBackend:
    name = "netns"
    shares_filesystem = True
    local_processes = True  # in namespaces, but processes of this machine running the argv as given
    resource_source = "psutil"

    def runs_image_of(self, client: str) -> bool:
        return False  # processes of the toolchain's builds, in namespaces

    def __init__(self, network: str = "", state_dir: Path | None = None) -> None:
        self.network = network
        self.state_file = Path(state_dir) / STATE_FILE if state_dir else None
        self.record = self._load()
        if self.record:
            block = self.record["block"]
        else:
            probe = NetnsPlan(network, 0)
            used = {b for ifname, addr in _root_addresses()
                    if not ifname.startswith(probe.link_prefix) and (b := block_of(addr)) is not None}
            block = choose_block(network, used)
        self.plan = NetnsPlan(network, block)
        self._netem: bool | None = None

    # ---- the record -----------------------------------------------------------------------
    def _load(self) -> dict:
        if self.state_file and self.state_file.exists():
            try:
                return json.loads(self.state_file.read_text())
            except (OSError, ValueError):
                return {}
        return {}

    def _save(self) -> None:
        if self.state_file and self.state_file.parent.exists():
            write_json_atomic(self.state_file, self.record)

    def _note(self, kind: str, entry: dict) -> None:
        """Record something *before* creating it, so teardown finds it even after a crash."""
        self.record.setdefault(kind, []).append(entry)
        self._save()

    def _org_index(self, org: str) -> int:
        orgs = self.record.get("orgs", {})
        if org not in orgs:
            raise BackendError(f"organization {org!r} is not part of netns network {self.network!r}; "
                               f"organizations: {', '.join(orgs) or '(none: not prepared)'}")
        return orgs[org]

    # ---- Backend protocol -------------------------------------------------------------------
    def host_for(self, org_index: int, node_index: int) -> str:
        return self.plan.node_address(org_index, node_index)

    def namespace_of(self, org: str) -> str:
        return self.plan.namespace(org)

    def prepare(self, org_names: list[str]) -> None:
        require_root()
        self._sweep()
        for ifname, addr in _root_addresses():
            if block_of(addr) == self.plan.block:
                raise BackendError(f"address block {self.plan.subnet} of network {self.network!r} is in use by "
                                   f"interface {ifname} ({addr})", hint="bring the other netns network down first")
        self.record = {"network": self.network, "tag": self.plan.tag, "block": self.plan.block,
                       "subnet": str(self.plan.subnet), "bridge_address": self.plan.bridge_address,
                       "orgs": {org: i for i, org in enumerate(org_names)}, "links": [], "namespaces": [], "rules": []}
        for i in range(len(org_names)):
            self.plan.org_prefix(i)  # fails early on too many organizations
        self._note("links", {"name": self.plan.bridge})
        for cmd in self.plan.bridge_commands():
            sh(cmd)
            if cmd[2] == "add" and cmd[1] == "link":
                _disable_ipv6(self.plan.bridge)
        for i, org in enumerate(org_names):
            self._note("namespaces", {"name": self.plan.namespace(org), "org": org})
            self._note("links", {"name": self.plan.host_veth(i)})
            for cmd in self.plan.org_commands(org, i):
                sh(cmd)
                if cmd[:3] == ["ip", "netns", "add"]:
                    sh(["ip", "netns", "exec", cmd[3], "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=False)
                if cmd[:3] == ["ip", "link", "add"]:
                    _disable_ipv6(self.plan.host_veth(i))

    def run(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
        require_root()
        self._org_index(node.org)
        process.run_to_completion(node.name, argv, env, log_path, timeout, prefix=self.plan.exec_prefix(node.org))

    def start(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, marker: str) -> NodeProcess:
        require_root()
        index = self._org_index(node.org)
        sh(self.plan.address_command(node.org, index, node.host))
        return process.spawn(node.name, argv, env, log_path, marker, prefix=self.plan.exec_prefix(node.org))

    def is_alive(self, proc: NodeProcess) -> bool:
        return process.is_alive(proc)

    def stop(self, proc: NodeProcess, timeout: float = 20.0) -> None:
        alive = process.is_alive(proc)
        process.stop(proc, timeout)
        if alive:
            process.wait_exited(proc)

    def kill(self, proc: NodeProcess) -> None:
        if process.is_alive(proc):
            process.kill(proc)
            process.wait_exited(proc)

    def pause(self, proc: NodeProcess) -> None:
        process.send(proc, signal.SIGSTOP)

    def resume(self, proc: NodeProcess) -> None:
        process.send(proc, signal.SIGCONT)

    # ---- faults -----------------------------------------------------------------------------
    def partition(self, groups: list[list[str]]) -> None:
        """Orgs in different groups cannot reach each other; orgs named in no group are unaffected.
        A new partition replaces the previous one (delays stay)."""
        require_root()
        routes = self.plan.partition_routes(groups, self.record.get("orgs", {}))
        self._heal(kinds={"blackhole"})
        for namespace, prefix in routes:
            self._note("rules", {"kind": "blackhole", "namespace": namespace, "prefix": prefix})
            sh(self.plan.blackhole_command(namespace, prefix))

    def delay(self, org: str, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> None:
        """Add delay_ms (+/- jitter_ms) to every packet the org sends, and drop loss_pct % of them."""
        require_root()
        index = self._org_index(org)
        if delay_ms < 0 or jitter_ms < 0 or not 0 <= loss_pct <= 100:
            raise BackendError(f"delay {delay_ms} ms, jitter {jitter_ms} ms, loss {loss_pct} %: "
                               "delay and jitter must be >= 0 and loss between 0 and 100")
        self._heal(kinds={"netem", "nfqueue"}, org=org)
        if self._netem is not False:
            entry = {"kind": "netem", "namespace": self.plan.namespace(org), "dev": self.plan.ns_veth(index), "org": org}
            self._note("rules", entry)
            result = sh(self.plan.netem_command(org, index, delay_ms, jitter_ms, loss_pct), check=False)
            if result.returncode == 0:
                self._netem = True
                return
            self._forget(entry)
            if "unknown" not in result.stderr.lower():
                raise BackendError(f"tc netem on {org}'s link failed: {result.stderr.strip()}")
            self._netem = False
        self._nfqueue_delay(org, index, delay_ms, jitter_ms, loss_pct)

    def _nfqueue_delay(self, org: str, index: int, delay_ms: int, jitter_ms: int, loss_pct: float) -> None:
        if not shutil.which("iptables"):
            raise NotSupportedError("this kernel has no tc netem qdisc and iptables is not installed, so the netns "
                                    "backend cannot delay a link", hint="apt-get install iptables")
        namespace = self.plan.namespace(org)
        queue = index + 1
        marker = f"--tag {namespace}"
        log = self.state_file.parent / "netns" / f"delay-{org}.log" if self.state_file else Path(f"/tmp/{namespace}-delay.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        argv = [sys.executable, "-m", "testbed.backends.nfqueue_delay", "--queue", str(queue),
                "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms), "--loss-pct", str(loss_pct), *marker.split()]
        proc = process.spawn(f"delay-{org}", argv, {}, log, marker, prefix=self.plan.exec_prefix(org))
        entry = {"kind": "nfqueue", "namespace": namespace, "org": org, "queue": queue,
                 "rule": self.plan.nfqueue_rule(index, queue, "-D"), "pid": proc.pid, "marker": marker}
        self._note("rules", entry)

        def failed() -> BackendError:
            tail = log.read_text().strip().splitlines()
            self._heal(kinds={"nfqueue"}, org=org)
            return BackendError(f"the link delayer for {org} did not start: {tail[-1] if tail else 'no output'}",
                                hint=f"log: {log}")

        def ready() -> bool:
            if "ready" in log.read_text():
                return True
            if not process.is_alive(proc):
                raise failed()
            return False

        poll_until(ready, timeout=15, interval=0.05, error=failed)
        sh([*self.plan.exec_prefix(org), *self.plan.nfqueue_rule(index, queue, "-A")])

    def heal(self) -> None:
        """Remove every partition and delay rule."""
        if self.record.get("rules"):
            require_root()
        self._heal()

    def _heal(self, kinds: set[str] | None = None, org: str | None = None) -> None:
        keep, problems = [], []
        for rule in self.record.get("rules", []):
            if (kinds and rule["kind"] not in kinds) or (org and rule.get("org") != org):
                keep.append(rule)
                continue
            try:
                self._remove_rule(rule)
            except BackendError as exc:
                problems.append(exc.message)
        self.record["rules"] = keep
        self._save()
        if problems:
            raise BackendError(f"heal left {len(problems)} rule(s) in place: {problems[0]}")

    def _remove_rule(self, rule: dict) -> None:
        ns = rule["namespace"]
        if not Path(f"/run/netns/{ns}").exists():
            return  # the namespace is gone, and the rule with it
        if rule["kind"] == "blackhole":
            result = sh(self.plan.blackhole_command(ns, rule["prefix"], "del"), check=False)
            if result.returncode != 0 and "No such process" not in result.stderr:
                raise BackendError(f"cannot remove route blackhole {rule['prefix']} in {ns}: {result.stderr.strip()}")
        elif rule["kind"] == "netem":
            sh(["tc", "-n", ns, "qdisc", "del", "dev", rule["dev"], "root"], check=False)
        elif rule["kind"] == "nfqueue":
            sh(["ip", "netns", "exec", ns, *rule["rule"]], check=False)
            process.stop(NodeProcess(name=f"delay-{rule['org']}", pid=rule["pid"], marker=rule["marker"]), timeout=5)

    def _forget(self, entry: dict) -> None:
        self.record["rules"] = [r for r in self.record.get("rules", []) if r != entry]
        self._save()

    # ---- teardown ---------------------------------------------------------------------------
    def teardown(self) -> None:
        """Remove every namespace, link and rule this network created (recorded or by name)."""
        namespaces = {n["name"] for n in self.record.get("namespaces", [])} | set(self._existing_namespaces())
        links = {link["name"] for link in self.record.get("links", [])} | set(self._existing_links())
        if not namespaces and not links and not self.record.get("rules"):
            return
        require_root()
        try:
            self._heal()
        except BackendError:
            pass  # deleting the namespaces below removes their rules anyway
        self._remove(namespaces, links)
        self.record.update({"links": [], "namespaces": [], "rules": []})
        self._save()
        left = set(self._existing_namespaces()) | set(self._existing_links())
        if left:
            raise BackendError(f"teardown of netns network {self.network!r} left {', '.join(sorted(left))}",
                               hint="remove them with 'ip netns del NAME' / 'ip link del NAME'")

    def _sweep(self) -> None:
        """Before prepare: remove leftovers of an earlier run of this same network (by name)."""
        namespaces, links = self._existing_namespaces(), self._existing_links()
        busy = [ns for ns in namespaces if self._pids_in(ns)]
        if busy:
            raise BackendError(f"namespace {busy[0]} of an earlier run of {self.network!r} still has processes",
                               hint=f"run 'testbed down {self.network}' first")
        self._remove(set(namespaces), set(links))

    def _remove(self, namespaces: set[str], links: set[str]) -> None:
        for ns in sorted(namespaces):
            for pid in self._pids_in(ns):  # only processes inside this network's own namespaces
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if Path(f"/run/netns/{ns}").exists():
                sh(["ip", "netns", "del", ns], check=False)
        for link in sorted(links, key=lambda name: name.endswith("br")):  # veths first, the bridge last
            if Path(f"/sys/class/net/{link}").exists():
                sh(["ip", "link", "del", link], check=False)

    def _pids_in(self, namespace: str) -> list[int]:
        if not Path(f"/run/netns/{namespace}").exists():
            return []
        out = sh(["ip", "netns", "pids", namespace], check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def _existing_namespaces(self) -> list[str]:
        try:
            return [p.name for p in Path("/run/netns").iterdir() if p.name.startswith(self.plan.namespace_prefix)]
        except OSError:
            return []

    def _existing_links(self) -> list[str]:
        try:
            return [p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(self.plan.link_prefix)]
        except OSError:
            return []
