"""Spec + client + backend + state dir -> a running Network with endpoints.

`Network.create` validates everything that can be checked before touching the disk
(ports free, toolchain present), writes the state directory, initialises and starts every
node and returns only once every node has all its peers and agrees on new blocks. Any
failure on the way stops what was started and removes what was written.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from testbed import toolchain
from testbed.backends import NodeProcess, get_backend
from testbed.chain.rpc import RpcClient, ipc_url
from testbed.clients import get_client
from testbed.clients.base import NodePlan, ValidatorRpc
from testbed.engines import engine_of
from testbed.errors import NotSupportedError, StateError, TestbedError
from testbed.keys import NetworkKeys
from testbed.monitoring import prometheus
from testbed.solver_plugin import solver_plugin
from testbed.spec.network import NetworkSpec
from testbed.state import StateDir, list_networks, state_root, write_json_atomic
from testbed.network_observe import NetworkObservation, NetworkStatus, NodeStatus  # noqa: F401  (re-exported)
from testbed.network_plan import (WEI_PER_ETH, check_ports_free, client_binary, genesis_blocks,  # noqa: F401  (re-exported)
                                  node_names, plan_nodes, write_node_files)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class Network(NetworkObservation):
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
        delay = engine_of(self.spec).genesis_delay_s(len(self.nodes))
        timestamp = hex(int(time.time() + delay)) if delay else None
        for name, genesis in genesis_blocks(self.spec, self.nodes, self.keys).items():
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
        write_node_files(self.spec, node, self.peers_of(node), node_dir, secrets=not peers_only)

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
