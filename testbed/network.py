"""Spec + client + backend + state dir -> a running Network with endpoints.

`Network.create` validates everything that can be checked before touching the disk
(ports free, toolchain present), writes the state directory, initialises and starts every
node and returns only once every node has all its peers and agrees on new blocks. Any
failure on the way stops what was started and removes what was written.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from testbed import toolchain
from testbed.backends import NodeProcess, get_backend
from testbed.chain.rpc import RpcClient, ipc_url
from testbed.chain.sample import snapshot_all
from testbed.clients import get_client
from testbed.backends.images import IMAGE_ENTRYPOINT
from testbed.clients.base import NodePlan, NodePorts, ValidatorRpc
from testbed.consensus import AgreementResult, NodeSnapshot, check_agreement, choose_branch, rewind_points, stall_limit_s
from testbed.engines import engine_of
from testbed.errors import NotSupportedError, ReadinessError, StateError, TestbedError
from testbed.keys import NetworkKeys, write_secret
from testbed.monitoring import prometheus
from testbed.solver_plugin import solver_plugin
from testbed.spec.network import NetworkSpec
from testbed.state import StateDir, list_networks, state_root, write_json_atomic

Progress = Callable[[str], None]
WEI_PER_ETH = 10**18


def _quiet(_: str) -> None:
    return None


def node_names(spec: NetworkSpec) -> dict[str, list[str]]:
    """Node names by organization: validators `<org>-v<i>`, then members `<org>-m<i>`."""
    return {
        org.name: [f"{org.name}-v{i}" for i in range(1, org.validators + 1)]
        + [f"{org.name}-m{i}" for i in range(1, org.members + 1)]
        for org in spec.organizations
    }


def client_binary(backend, client: str, log: Progress = _quiet) -> Path:
    """The program a backend runs for `client`: a toolchain build for processes (and hosts the
    binary is shipped to), or, where the backend runs the client's pinned image, its entrypoint."""
    if backend.runs_image_of(client):
        return Path(IMAGE_ENTRYPOINT[client])
    return toolchain.ensure(get_client(client).binary, log=log)


def plan_nodes(spec: NetworkSpec, keys: NetworkKeys, backend, *, departed: list[str] = ()) -> list[NodePlan]:
    """Every node's plan, in spec order; departed organizations' nodes keep their index (and
    ports) reserved but are not planned."""
    plans: list[NodePlan] = []
    index = 0
    for org_index, org in enumerate(spec.organizations):
        for local_index, name in enumerate(node_names(spec)[org.name]):
            role = "validator" if name.split("-")[-1].startswith("v") else "member"
            if org.name in departed:
                index += 1
                continue
            plans.append(NodePlan(
                name=name, org=org.name, role=role, index=index,
                host=backend.host_for(org_index, local_index),
                ports=NodePorts.for_index(spec.ports.base, index), key=keys.nodes[name],
            ))
            index += 1
    return plans


def check_ports_free(nodes: list[NodePlan], spec_source: str) -> None:
    for node in nodes:
        for label, port in zip(("p2p", "http", "ws", "authrpc", "metrics"), node.ports.all()):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((node.host, port))
                except OSError as exc:
                    if exc.errno == errno.EADDRNOTAVAIL:
                        break  # the backend creates this address when it starts the node (netns)
                    raise StateError(
                        f"port {port} ({node.name} {label}) is already in use on {node.host}",
                        hint=f"set ports.base in {spec_source} to a free range, or stop what uses it",
                    ) from None


@dataclass(frozen=True)
class NodeStatus:
    plan: NodePlan
    process_alive: bool
    pid: int | None
    snapshot: NodeSnapshot


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    client: str
    engine: str
    nodes: list[NodeStatus]
    agreement: AgreementResult
    observed_at: float = 0.0  # wall clock of the look
    block_period: int = 1

    @property
    def head_age_s(self) -> float | None:
        """Seconds since the newest block any node holds was sealed."""
        stamps = [n.snapshot.head_timestamp for n in self.nodes if n.snapshot.reachable and n.snapshot.head_timestamp]
        return round(max(0.0, self.observed_at - max(stamps)), 1) if stamps else None

    @property
    def stalled(self) -> bool:
        """No node has a block younger than max(15 s, 10 periods): the chain does not grow."""
        age = self.head_age_s
        return age is not None and age > stall_limit_s(self.block_period)

    def to_json(self) -> dict:
        return {
            "network": self.name, "client": self.client, "engine": self.engine,
            "head_age_s": self.head_age_s, "stalled": self.stalled,
            "agreement": {
                "agreed": self.agreement.agreed, "common_height": self.agreement.common_height,
                "summary": self.agreement.summary(),
                "divergences": [vars(d) for d in self.agreement.divergences],
                "unreachable": list(self.agreement.unreachable),
                "validators_agree": self.agreement.validators_agree,
            },
            "nodes": [
                {
                    "name": n.plan.name, "org": n.plan.org, "role": n.plan.role, "pid": n.pid,
                    "alive": n.process_alive, "rpc_url": n.plan.rpc_url, "reachable": n.snapshot.reachable,
                    "head_number": n.snapshot.head_number, "head_hash": n.snapshot.head_hash,
                    "peers": n.snapshot.peers,
                    "validators": list(n.snapshot.validators) if n.snapshot.validators is not None else None,
                }
                for n in self.nodes
            ],
        }


class Network:
    def __init__(self, spec: NetworkSpec, state: StateDir, keys: NetworkKeys) -> None:
        self.spec = spec
        self.state = state
        self.keys = keys
        self.client = get_client(spec.client)
        self.backend = get_backend(spec.backend, network=spec.name, state_dir=state.root)
        self.departed = self._departed(state)
        self.nodes = plan_nodes(spec, keys, self.backend, departed=self.departed)
        self.validator_rpc = self.client.validator_rpc(spec.consensus.engine)

    @staticmethod
    def _departed(state: StateDir) -> list[str]:
        """Organizations that left (testbed leave): their node indices stay reserved."""
        try:
            return list(json.loads(state.network_file.read_text()).get("departed", []))
        except (OSError, ValueError):
            return []

    @property
    def members(self) -> list:
        """The spec's organizations still in the network (not those that left)."""
        return [o for o in self.spec.organizations if o.name not in self.departed]

    @property
    def organizations(self) -> list[str]:
        """Names of the member organizations currently in the network."""
        return [o.name for o in self.members]

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, name: str, base: Path | None = None, *, org_keys_only: str | None = None) -> "Network":
        """The network as saved; with `org_keys_only`, as one organization's process sees it: its
        own account keys, every node by its public key, no other private key loaded."""
        state = StateDir.for_network(name, base)
        if not state.exists():
            raise StateError(f"no network named {name!r} in {state.root.parent}", hint="run 'testbed ls' to list networks, or 'testbed up' to create one")
        try:
            spec = NetworkSpec.model_validate_json(state.spec_file.read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"{state.spec_file}: spec snapshot is missing or damaged ({exc.__class__.__name__})") from None
        if org_keys_only is None:
            return cls(spec, state, NetworkKeys.load(state.keys_dir))
        record = json.loads(state.network_file.read_text())
        public = {n["name"]: n["enode"].removeprefix("enode://").split("@")[0] for n in record["nodes"]}
        return cls(spec, state, NetworkKeys.load_org(state.keys_dir, org_keys_only, public))

    @classmethod
    def create(cls, spec: NetworkSpec, *, source: str = "the spec", base: Path | None = None,
               progress: Progress = _quiet, timeout: float | None = None, ready_blocks: int = 3) -> "Network":
        state = StateDir.for_network(spec.name, base)
        if state.exists():
            old = cls.load(spec.name, base)
            running = old.running_nodes()
            if running:
                raise StateError(f"network {spec.name!r} is already running ({len(running)} nodes)",
                                 hint=f"run 'testbed down {spec.name}' first, or 'testbed status {spec.name}'")
            progress(f"replacing the stopped network state in {state.root}")
        elif state.root.exists():
            raise StateError(f"{state.root} exists but is not a network state directory", hint="move or remove it")
        backend = get_backend(spec.backend, network=spec.name, state_dir=state.root)
        if hasattr(backend, "attach_progress"):  # backends with long steps of their own (ansible) report into it
            backend.attach_progress(progress)
        client = get_client(spec.client)
        keys = NetworkKeys.generate(node_names(spec), {o.name: o.accounts for o in spec.organizations})
        check_ports_free(plan_nodes(spec, keys, backend), source)
        binaries = {name: client_binary(backend, name, progress) for name in spec.clients}
        if state.root.exists():
            shutil.rmtree(state.root)
        network = cls.__new__(cls)
        network.spec, network.state, network.keys = spec, state, keys
        network.client, network.backend = client, backend
        network.departed = []
        network.nodes = plan_nodes(spec, keys, backend)
        network.validator_rpc = client.validator_rpc(spec.consensus.engine)
        try:
            network._write_state(binaries, progress)
            network.start_all(progress)
            network.wait_ready(progress=progress, timeout=timeout, new_blocks=ready_blocks)
        except BaseException as exc:
            logs = network._abandon()
            if isinstance(exc, TestbedError) and logs:
                exc.hint = (exc.hint + "; " if exc.hint else "") + f"node logs kept in {logs}"
            raise
        return network

    def _write_state(self, binaries: dict[str, Path], progress: Progress) -> None:
        progress(f"writing keys, genesis and node configuration to {self.state.root}")
        self.state.root.mkdir(parents=True, mode=0o700)
        self.keys.save(self.state.keys_dir)
        write_json_atomic(self.state.spec_file, json.loads(self.spec.model_dump_json()))
        validators = [n.address for n in self.nodes if n.is_validator]
        alloc = {addr: self.spec.account_balance_eth * WEI_PER_ETH for addr in self.keys.funded_addresses()}
        delay = engine_of(self.spec).genesis_delay_s(len(self.nodes))
        timestamp = hex(int(time.time() + delay)) if delay else None
        for name in self.spec.clients:  # one genesis block; in a mixed network, in each client's format
            genesis = get_client(name).genesis(self.spec, validators, alloc)
            if timestamp:
                genesis["timestamp"] = timestamp
            write_json_atomic(self.state.genesis_file_of(name, self.spec.client), genesis)
        for node in self.nodes:
            self.render_node_files(node)
        self.write_network_record(binaries[self.spec.client], binaries={k: str(v) for k, v in binaries.items()})
        progress(f"initialising {len(self.nodes)} node databases")
        self.backend.prepare([o.name for o in self.spec.organizations])
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self._init_node, self.nodes))

    def render_node_files(self, node: NodePlan, *, peers_only: bool = False) -> None:
        """Write a node's files; with peers_only, only its non-secret files (config, peer lists)."""
        node_dir = self.state.node_dir(node.name)
        node_dir.mkdir(parents=True, exist_ok=True)
        for rendered in self.adapter_of(node).node_files(self.spec, node, self.peers_of(node)):
            target = node_dir / rendered.path
            if rendered.secret:
                if not peers_only:
                    write_secret(target, rendered.content)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(rendered.content)

    def write_network_record(self, binary: Path | None = None, **extra) -> None:
        previous = json.loads(self.state.network_file.read_text()) if self.state.network_file.is_file() else {}
        write_json_atomic(self.state.network_file, {
            **previous,
            "name": self.spec.name, "client": self.spec.client, "engine": self.spec.consensus.engine,
            "backend": self.spec.backend, "binary": str(binary or previous.get("binary")),
            "created": previous.get("created", time.time()),
            "nodes": [{"name": n.name, "org": n.org, "role": n.role, "host": n.host, "ports": vars(n.ports),
                       "enode": n.enode, "rpc_url": n.rpc_url, "ws_url": n.ws_url, "address": n.address}
                      for n in self.nodes],
            **extra,
        })

    def init_node(self, node: NodePlan) -> None:
        self._init_node(node)

    def _init_node(self, node: NodePlan) -> None:
        adapter = self.adapter_of(node)
        genesis = self.state.genesis_file_of(adapter.name, self.spec.client)
        argv = adapter.init_command(self.binary_of(adapter.name), self.spec, node, self.state.node_dir(node.name), genesis)
        if argv:
            self.backend.run(node, argv, adapter.environment(self.spec, node), self.state.log_file(node.name), timeout=60)

    def _abandon(self) -> Path | None:
        """After a failed `up`: end every process, remove all state, keep only the node logs."""
        for node in self.nodes:
            proc = self.state.read_pid(node.name)
            if proc:
                self.backend.stop(proc, timeout=5)
        self.backend.teardown()
        kept: Path | None = None
        if self.state.root.exists():
            logs = sorted(self.state.root.glob("nodes/*/node.log"))
            if logs:
                kept = self.state.root.parent / "_failed" / f"{self.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
                kept.mkdir(parents=True, exist_ok=True)
                for log in logs:
                    shutil.copy2(log, kept / f"{log.parent.name}.log")
            shutil.rmtree(self.state.root, ignore_errors=True)
        self.state.remove_admin_dir()
        return kept

    # ---- facts ------------------------------------------------------------------------------
    @property
    def binary(self) -> Path:
        """The program that runs the network client's nodes."""
        return self.binary_of(self.spec.client)

    def binary_of(self, client: str) -> Path:
        """The program that runs `client`'s nodes (records older than mixed networks: `binary` only)."""
        data = json.loads(self.state.network_file.read_text())
        return Path(data.get("binaries", {}).get(client) or data["binary"])

    def adapter_of(self, node: NodePlan):
        """The client adapter of a node: its organization's client (a mixed network), else the network's."""
        name = self.spec.client_of(node.org)
        return self.client if name == self.client.name else get_client(name)

    def validator_rpc_of(self, name: str) -> ValidatorRpc:
        """The validator-set methods node `name`'s client answers."""
        return self.adapter_of(self.node(name)).validator_rpc(self.spec.consensus.engine)

    @property
    def name(self) -> str:
        return self.spec.name

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise StateError(f"network {self.name!r} has no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def peers_of(self, node: NodePlan) -> list[NodePlan]:
        return [n for n in self.nodes if n.name != node.name]

    def endpoints(self, only: list[str] | None = None) -> dict[str, str]:
        return {n.name: n.rpc_url for n in self.nodes if only is None or n.name in only}

    def process(self, name: str) -> NodeProcess | None:
        proc = self.state.read_pid(name)
        return proc if proc and self.backend.is_alive(proc) else None

    def first_node(self, org: str):
        """The organization's first node: the one its accounts, CTI steps and load go through."""
        node = next((n for n in self.nodes if n.org == org), None)
        if node is None:
            raise StateError(f"{org!r} has no node in {self.name!r}; organizations: {', '.join(self.organizations)}")
        return node

    def org_rpc_urls(self, org: str) -> list[str]:
        """The organization's nodes' RPC URLs, running ones first (spec order within each): a
        client of the org fails over along this list, never to another org's node."""
        nodes = [n for n in self.nodes if n.org == org]
        if not nodes:
            raise StateError(f"{org!r} has no node in {self.name!r}; organizations: {', '.join(self.organizations)}")
        return [n.rpc_url for n in sorted(nodes, key=lambda n: self.process(n.name) is None)]

    def running_nodes(self) -> list[str]:
        return [n.name for n in self.nodes if self.process(n.name)]

    # ---- lifecycle --------------------------------------------------------------------------
    def start_all(self, progress: Progress = _quiet) -> None:
        if hasattr(self.backend, "attach_progress"):
            self.backend.attach_progress(progress)
        progress(f"starting {len(self.nodes)} {self.spec.client} nodes ({self.spec.consensus.engine}, backend {self.spec.backend})")
        for node in self.nodes:
            if not self.process(node.name):
                self._spawn(node)
        plugin = solver_plugin()
        if self.state.deployment_file.is_file() and plugin is not None:  # Solvers run beside their orgs' nodes
            plugin.start(self, progress, wait=False)

    def _spawn(self, node: NodePlan) -> NodeProcess:
        node_dir = self.state.node_dir(node.name)
        adapter = self.adapter_of(node)
        ipc = None
        if adapter.admin_over_ipc:
            ipc = self.state.admin_socket(node.name)
            self.state.make_admin_dir()
            ipc.unlink(missing_ok=True)  # a crashed node's socket: Besu refuses to start beside it
        sealer = signer_dir = None
        if adapter.sealer_tool and self.backend.local_processes:
            sealer, signer_dir = toolchain.ensure(adapter.sealer_tool), self.state.signer_dir(node.name)
            self.state.make_admin_dir()
        argv = adapter.command(self.binary_of(adapter.name), self.spec, node, node_dir, self.peers_of(node), ipc=ipc,
                               sealer=sealer, signer_dir=signer_dir)
        proc = self.backend.start(node, argv, adapter.environment(self.spec, node),
                                  self.state.log_file(node.name), self.state.marker(node.name))
        self.state.write_pid(proc)
        return proc

    def start_node(self, name: str) -> NodeProcess:
        node = self.node(name)
        if self.process(name):
            raise StateError(f"node {name} is already running")
        return self._spawn(node)

    def stop_node(self, name: str) -> None:
        self.node(name)
        proc = self.process(name)
        if proc is None:
            raise StateError(f"node {name} is not running", hint=f"'testbed start {name}' starts it")
        self.backend.stop(proc)
        self.state.clear_pid(name)

    def kill_node(self, name: str) -> None:
        self.node(name)
        proc = self.process(name)
        if proc is None:
            raise StateError(f"node {name} is not running")
        self.backend.kill(proc)
        self.state.clear_pid(name)

    def pause_node(self, name: str) -> None:
        proc = self.process(self.node(name).name)
        if proc is None:
            raise StateError(f"node {name} is not running")
        self.backend.pause(proc)

    def resume_node(self, name: str) -> None:
        proc = self.process(self.node(name).name)
        if proc is None:
            raise StateError(f"node {name} is not running")
        self.backend.resume(proc)

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every node by pid; with purge, remove the state directory too."""
        plugin = solver_plugin()
        if plugin is not None:
            plugin.stop(self)  # Solvers first, by pid, while their nodes still answer
        prometheus.down(self)  # the network's monitor, if one runs
        stopped: list[str] = []
        procs = [(n.name, self.state.read_pid(n.name)) for n in self.nodes]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for name, proc in procs:
                if proc and self.backend.is_alive(proc):
                    stopped.append(name)
            list(pool.map(lambda item: item[1] and self.backend.stop(item[1], timeout=15), procs))
        for name, _ in procs:
            self.state.clear_pid(name)
        self.backend.teardown()
        self.state.remove_admin_dir()  # the sockets went with their nodes; `start` makes it again
        if purge:
            shutil.rmtree(self.state.root, ignore_errors=True)
        return stopped

    def heal(self, *, progress: Progress = _quiet, settle: float = 20.0) -> dict[str, int]:
        """Remove every link fault, then make sure the chain is one chain again.

        After a split, Clique can stay stuck on competing branches of equal weight: each side
        prefers its own, and every signer that may still seal sits on the other branch. If the
        chain does not move on within `settle` seconds, the nodes off the chosen branch (the
        heaviest, then the one most nodes hold) are rewound to the common ancestor
        (debug_setHead) and sync the chosen branch, as an operator would. Returns {node: height}
        of the nodes rewound.
        """
        self.backend.heal()
        return self.reconcile_forks(progress=progress, settle=settle)

    def reconcile_forks(self, *, progress: Progress = _quiet, settle: float = 20.0, wait: bool = True) -> dict[str, int]:
        live = self.running_nodes()
        start = {s.node: s.head_number for s in self.snapshots(only=live) if s.reachable}
        if not start:
            return {}
        goal = max(start.values()) + 2
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            snaps = self.snapshots(only=live)
            if all(s.reachable and (s.head_number or 0) >= goal for s in snaps):
                return {}
            time.sleep(1)
        if not engine_of(self.spec).repairs_forks:
            return {}  # QBFT/IBFT blocks are final: no competing branches to reconcile
        low = max(0, min(start.values()) - 128)
        heights = list(range(low, max(start.values()) + 1))
        snaps = self.snapshots(heights, only=live)
        weights = {s.node: self._total_difficulty(s) for s in snaps if s.reachable}
        chosen = choose_branch(snaps, weights)
        points = rewind_points(snaps, chosen) if chosen else {}
        for name, height in points.items():
            progress(f"{name} is stuck on a competing branch: rewinding it to block #{height} to follow {chosen}'s")
            self.admin_call(name, "debug_setHead", hex(height))
        if points and wait:
            self.wait_ready(progress=progress, new_blocks=2, only=live, timeout=90 + 3 * len(live))
        return points

    def _genesis_time(self) -> float:
        """The genesis block's timestamp (a new Clique network's is set a few seconds ahead)."""
        try:
            return float(int(json.loads(self.state.genesis_file.read_text()).get("timestamp", "0x0"), 16))
        except (OSError, ValueError, AttributeError):
            return 0.0

    def _total_difficulty(self, snap: NodeSnapshot) -> int:
        block = self._rpc_call(snap.node, "eth_getBlockByHash", snap.head_hash, False) or {}
        return int(block.get("totalDifficulty") or "0x0", 16)

    def _rpc_call(self, name: str, method: str, *params, url: str | None = None):
        with RpcClient(url or self.node(name).rpc_url, timeout=30) as rpc:
            return rpc.call(method, *params)

    def admin_url(self, name: str) -> str:
        """Where node `name` serves validator votes, sealing control and rewinds: its IPC socket
        (geth, GoQuorum), reachable only from this machine's filesystem; Besu: its own RPC."""
        node = self.node(name)
        if not self.adapter_of(node).admin_over_ipc:
            return node.rpc_url
        if not self.backend.shares_filesystem:
            raise NotSupportedError(
                f"node {name} runs on a remote host: its admin socket is reachable only there",
                hint="run the vote or rewind on the member host (geth attach its IPC socket)")
        return ipc_url(self.state.admin_socket(name))

    def admin_urls(self, only: list[str] | None = None) -> dict[str, str] | None:
        """admin_url of every node (or of `only`); None where they cannot be reached from here."""
        try:
            return {n.name: self.admin_url(n.name) for n in self.nodes if only is None or n.name in only}
        except NotSupportedError:
            return None

    def admin_call(self, name: str, method: str, *params):
        return self._rpc_call(name, method, *params, url=self.admin_url(name))

    # ---- observation ------------------------------------------------------------------------
    def snapshots(self, heights: list[int] | None = None, only: list[str] | None = None) -> list[NodeSnapshot]:
        methods = {n.name: self.validator_rpc_of(n.name).list_method for n in self.nodes if only is None or n.name in only}
        return snapshot_all(self.endpoints(only), methods, heights, admin=self.admin_urls(only))

    def agreement(self, *, full: bool = False, only: list[str] | None = None, settle: float = 0.0) -> AgreementResult:
        """Agreement on the latest common block (or, with full, on every height up to it).

        Clique has no instant finality: two signers may seal competing blocks at the tip and
        one is replaced a block later. A disagreement among reachable nodes is therefore
        sampled again for up to `settle` seconds; one that persists is the answer.
        """
        deadline = time.monotonic() + settle
        while True:
            result = self._agreement_once(full=full, only=only)
            if result.agreed or result.unreachable or time.monotonic() >= deadline:
                return result
            time.sleep(1.0)

    def _agreement_once(self, *, full: bool, only: list[str] | None) -> AgreementResult:
        first = self.snapshots(only=only)
        heads = [s.head_number for s in first if s.reachable and s.head_number is not None]
        if not heads:
            return check_agreement(first)
        common = min(heads)
        heights = list(range(0, common + 1)) if full else [common]
        snaps = self.snapshots(heights, only=only)
        now = [s.head_number for s in snaps if s.reachable and s.head_number is not None]
        if now and min(now) < common:  # a Clique reorg to a shorter, heavier branch meanwhile: judge up to the new common head
            snaps = [replace(s, hashes={h: v for h, v in s.hashes.items() if h <= min(now)}) for s in snaps]
        return check_agreement(snaps)

    def status(self) -> NetworkStatus:
        pids = {n.name: self.state.read_pid(n.name) for n in self.nodes}
        alive = {name: bool(p and self.backend.is_alive(p)) for name, p in pids.items()}
        live = [name for name, ok in alive.items() if ok]
        snaps = {s.node: s for s in self.snapshots(only=live)} if live else {}
        heads = [s.head_number for s in snaps.values() if s.reachable and s.head_number is not None]
        if heads:
            snaps = {s.node: s for s in self.snapshots([min(heads)], only=live)}
        all_snaps = [snaps.get(n.name, NodeSnapshot(node=n.name, reachable=False, error="not running")) for n in self.nodes]
        return NetworkStatus(
            name=self.name, client=self.spec.client, engine=self.spec.consensus.engine,
            nodes=[NodeStatus(plan=n, process_alive=alive[n.name], pid=pids[n.name].pid if pids[n.name] else None,
                              snapshot=snaps.get(n.name, NodeSnapshot(node=n.name, reachable=False, error="not running")))
                   for n in self.nodes],
            agreement=check_agreement(all_snaps), observed_at=time.time(), block_period=self.spec.consensus.block_period,
        )

    def wait_ready(self, *, progress: Progress = _quiet, timeout: float | None = None, new_blocks: int = 3,
                   only: list[str] | None = None) -> AgreementResult:
        """Return once every node (or `only`) has all its peers and agrees on `new_blocks` new blocks."""
        names = only or [n.name for n in self.nodes]
        # a dial that loses a simultaneous-connect race is retried only after the client's dial
        # history expires (about 35 s in geth and GoQuorum): leave room for one such retry
        timeout = timeout if timeout is not None else 60 + 3 * len(names)
        deadline = time.monotonic() + timeout
        expected_peers = len(self.nodes) - 1
        progress(f"waiting for {len(names)} nodes to peer ({expected_peers} peers each)")
        target: int | None = None
        last: list[NodeSnapshot] = []
        # Clique signers seal from the first second, before they are peered: competing first
        # blocks of equal weight can leave the chain stuck (as after a partition). No new head
        # for this long while fully peered means stuck: reconcile the branches.
        stall_after = max(10.0, 5.0 * self.spec.consensus.block_period)
        first_block_at = self._genesis_time() + self.spec.consensus.block_period  # no block can exist before
        seen_heads: tuple = ()
        moved_at = time.monotonic()
        while time.monotonic() < deadline:
            for name in names:
                if not self.process(name):
                    raise ReadinessError(f"node {name} exited during start-up: " + self._last_log_line(name),
                                         hint=f"log: {self.state.log_file(name)}")
            last = self.snapshots(only=names)
            peered = all(s.reachable and (s.peers or 0) >= min(expected_peers, len(names) - 1) for s in last)
            now_heads = tuple(s.head_hash for s in last)
            if now_heads != seen_heads:
                seen_heads, moved_at = now_heads, time.monotonic()
            elif peered and min(time.monotonic() - moved_at, time.time() - first_block_at) > stall_after:
                rewound = self.reconcile_forks(progress=progress, settle=0, wait=False)
                progress(f"start-up stalled for {stall_after:.0f}s; " + (f"rewound {rewound}" if rewound else "no competing branches found"))
                moved_at = time.monotonic()
            if peered:
                heads = [s.head_number for s in last]
                if target is None:
                    target = max(heads) + new_blocks
                    progress(f"all nodes peered; waiting for block #{target} agreed by every node")
                if min(heads) >= target:
                    result = check_agreement(self.snapshots([target], only=names))
                    if result.agreed:
                        progress(f"ready: {result.summary()}")
                        return result
            time.sleep(0.25)
        laggard = self._laggard(last, expected_peers, target)
        raise ReadinessError(
            f"network {self.name!r} not ready after {timeout:.0f}s: {laggard}: " + self._last_log_line(laggard.split()[0]),
            hint=f"log: {self.state.log_file(laggard.split()[0])}",
        )

    def _laggard(self, snaps: list[NodeSnapshot], expected_peers: int, target: int | None) -> str:
        for s in snaps:
            if not s.reachable:
                return f"{s.node} does not answer RPC"
        for s in snaps:
            if (s.peers or 0) < expected_peers:
                return f"{s.node} has {s.peers} of {expected_peers} peers"
        if snaps and target is not None:
            lowest = min(snaps, key=lambda s: s.head_number or 0)
            return f"{lowest.node} is at block {lowest.head_number}, waiting for {target}"
        return f"{snaps[0].node if snaps else self.nodes[0].name} not ready"

    def _last_log_line(self, name: str) -> str:
        lines = [line for line in self.state.tail_log(name, 40) if line.strip()]
        for line in reversed(lines):
            if any(word in line for word in ("Fatal", "ERROR", "error", "panic")):
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "(empty log)"


def resolve_network(name: str | None) -> Network:
    """The named network, or the only one there is."""
    if name:
        return Network.load(name)
    known = list_networks()
    if len(known) == 1:
        return Network.load(known[0].name)
    if not known:
        raise StateError(f"no network in {state_root()}", hint="run 'testbed up' first")
    raise StateError(f"several networks exist ({', '.join(s.name for s in known)})", hint="name one with --network")
