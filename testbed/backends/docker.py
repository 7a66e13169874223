"""Docker backend: one docker network per consortium, one container per node (docker SDK).

What is rendered (pure, unit-tested): the network (a bridge on the network's /19 of
198.18.0.0/15, the same block the netns plan gives it; no masquerading, so containers reach
nothing outside), and per node a container spec: the pinned image of the client (or the
spec's `image`), its entrypoint and the client's command line, the node directory and the
genesis bind-mounted at their own paths (so the command line needs no rewriting), the node's
static address on the network (what peers dial), its HTTP, WS and metrics ports published on
127.0.0.1 only, labels naming network, organization, node and role, the operator's uid:gid.

What acts goes through `DockerEngine`, a small seam over the SDK (`docker.from_env()`).

Faults: crash = container kill, pause/resume = container pause/unpause, partition = network
disconnect of the cut-off organizations' containers (healed by reconnecting them at their
own address). Delay needs tc inside the containers: not supported (use `backend: netns`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from testbed.backends.base import NodeProcess
from testbed.backends.images import IMAGE_ENTRYPOINT, image_for
from testbed.backends.netns_plan import NetnsPlan, preferred_block
from testbed.clients.base import NodePlan, ipc_socket_in
from testbed.errors import BackendError, NotSupportedError
from testbed.spec.network import NetworkSpec
from testbed.state import StateDir, write_json_atomic

LABEL = "org.cti-testbed"
STATE_FILE = "docker.json"
LIVE_STATES = ("running", "paused", "restarting")


# ---- rendering (pure) ---------------------------------------------------------------------------
def network_name(network: str) -> str:
    return f"tb-{network}"


def container_name(network: str, node: str) -> str:
    return f"tb-{network}-{node}"


def labels(network: str, node: NodePlan | None = None) -> dict[str, str]:
    out = {f"{LABEL}.network": network}
    if node is not None:
        out.update({f"{LABEL}.node": node.name, f"{LABEL}.org": node.org, f"{LABEL}.role": node.role})
    return out


def network_spec(network: str, plan: NetnsPlan) -> dict:
    """Keyword arguments of `networks.create` (IPAM as plain dicts; the engine converts them)."""
    return {
        "name": network_name(network),
        "driver": "bridge",
        "ipam": {"subnet": str(plan.subnet), "gateway": plan.bridge_address},
        "options": {"com.docker.network.bridge.enable_ip_masquerade": "false"},
        "labels": labels(network),
    }


def split_command(client: str, argv: list[str]) -> tuple[list[str], list[str]]:
    """(entrypoint, command): the client's own binary becomes the image's; any other program
    (e.g. Besu's init `cp`) runs as itself inside the image."""
    if Path(argv[0]).name == IMAGE_ENTRYPOINT[client]:
        return [IMAGE_ENTRYPOINT[client]], list(argv[1:])
    return [argv[0]], list(argv[1:])


def published_ports(node: NodePlan) -> dict[str, tuple[str, int]]:
    """HTTP, WS and metrics on 127.0.0.1 only, same port numbers; p2p stays on the docker network."""
    p = node.ports
    return {f"{port}/tcp": ("127.0.0.1", port) for port in (p.http, p.ws, p.metrics)}


def container_spec(*, network: str, client: str, image: str, node: NodePlan, argv: list[str], env: dict[str, str],
                   node_dir: Path, genesis: Path, user: str, admin_dir: Path | None = None) -> dict:
    """Keyword arguments of `containers.create` for a long-running node; `admin_dir`: the host
    directory of the nodes' IPC sockets, mounted at the same path (the harness votes through it)."""
    entrypoint, command = split_command(client, argv)
    volumes = {str(node_dir): {"bind": str(node_dir), "mode": "rw"}, str(genesis): {"bind": str(genesis), "mode": "ro"}}
    if admin_dir is not None:
        volumes[str(admin_dir)] = {"bind": str(admin_dir), "mode": "rw"}
    return {
        "name": container_name(network, node.name),
        "image": image,
        "entrypoint": entrypoint,
        "command": command,
        "environment": dict(env),
        "labels": labels(network, node),
        "user": user,
        "hostname": node.name,
        "working_dir": str(node_dir),
        "volumes": volumes,
        "ports": published_ports(node),
        "network": network_name(network),
        "ipv4_address": node.host,
        "restart_policy": {"Name": "no"},  # a crash stays a crash: faults are the testbed's to inject
        "stop_signal": "SIGTERM",
        "detach": True,
    }


def oneoff_spec(*, network: str, client: str, image: str, node: NodePlan, argv: list[str], env: dict[str, str],
                node_dir: Path, genesis: Path, user: str) -> dict:
    """A one-off container (database init): same image, mounts and user; no network at all."""
    entrypoint, command = split_command(client, argv)
    return {
        "name": container_name(network, node.name) + "-init",
        "image": image,
        "entrypoint": entrypoint,
        "command": command,
        "environment": dict(env),
        "labels": {**labels(network, node), f"{LABEL}.oneoff": "init"},
        "user": user,
        "working_dir": str(node_dir),
        "volumes": {str(node_dir): {"bind": str(node_dir), "mode": "rw"},
                    str(genesis): {"bind": str(genesis), "mode": "ro"}},
        "network_mode": "none",
    }


# ---- the seam over the docker SDK ---------------------------------------------------------------
class DockerEngine:
    """The few docker SDK calls the backend makes. Tests replace it with a recording fake."""

    def __init__(self, client=None) -> None:
        self._client = client

    @property
    def client(self):
        if self._client is None:
            try:
                import docker
                self._client = docker.from_env()
                self._client.ping()
            except Exception as exc:  # docker.errors.DockerException and connection errors alike
                self._client = None
                raise BackendError(f"no Docker engine answers ({exc.__class__.__name__}: {str(exc)[:200]})",
                                   hint="start dockerd (or set DOCKER_HOST) and check 'docker info'") from None
        return self._client

    def ping(self) -> bool:
        return bool(self.client.ping())

    def ensure_network(self, spec: dict) -> None:
        import docker

        if self.client.networks.list(names=[spec["name"]]):
            return
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=spec["ipam"]["subnet"],
                                                                           gateway=spec["ipam"]["gateway"])])
        kwargs = {k: v for k, v in spec.items() if k not in ("name", "ipam")}
        self.client.networks.create(spec["name"], ipam=ipam, **kwargs)

    def remove_network(self, name: str) -> None:
        for net in self.client.networks.list(names=[name]):
            net.remove()

    def create_and_start(self, spec: dict) -> tuple[str, int]:
        kwargs = {k: v for k, v in spec.items() if k not in ("ipv4_address", "network", "detach")}
        endpoint = self.client.api.create_endpoint_config(ipv4_address=spec["ipv4_address"])
        container = self.client.containers.create(network=spec["network"],
                                                  networking_config={spec["network"]: endpoint}, **kwargs)
        container.start()
        container.reload()
        return container.id, int(container.attrs["State"]["Pid"])

    def run_once(self, spec: dict, timeout: float) -> tuple[int, bytes]:
        self.remove(spec["name"])
        container = self.client.containers.create(**spec)
        try:
            container.start()
            code = container.wait(timeout=timeout)["StatusCode"]
            return int(code), container.logs()
        finally:
            container.remove(force=True)

    def state(self, name: str) -> dict | None:
        import docker

        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        return {"id": container.id, "status": container.status, "pid": container.attrs["State"]["Pid"]}

    def _get(self, name: str):
        return self.client.containers.get(name)

    def stop(self, name: str, timeout: float) -> None:
        self._get(name).stop(timeout=int(timeout))

    def kill(self, name: str) -> None:
        self._get(name).kill()

    def pause(self, name: str) -> None:
        self._get(name).pause()

    def unpause(self, name: str) -> None:
        self._get(name).unpause()

    def logs(self, name: str) -> bytes:
        return self._get(name).logs()

    def remove(self, name: str) -> None:
        import docker

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def containers(self, label_filter: dict[str, str]) -> list[str]:
        filters = {"label": [f"{k}={v}" for k, v in label_filter.items()]}
        return [c.name for c in self.client.containers.list(all=True, filters=filters)]

    def disconnect(self, network: str, container: str) -> None:
        self.client.networks.get(network).disconnect(container, force=True)

    def connect(self, network: str, container: str, ipv4_address: str) -> None:
        self.client.networks.get(network).connect(container, ipv4_address=ipv4_address)


# ---- the backend ----------------------------------------------------------------------------------
class DockerBackend:
    name = "docker"
    shares_filesystem = True
    local_processes = False  # containers of pinned images
    resource_source = "prometheus"  # the containers' own metrics endpoints

    def runs_image_of(self, client: str) -> bool:
        return True  # every client from its pinned image (images.py)

    def __init__(self, network: str = "", state_dir: Path | None = None, *, engine: DockerEngine | None = None,
                 user: str | None = None) -> None:
        self.network = network
        self.state_dir = Path(state_dir) if state_dir else None
        self.engine = engine or DockerEngine()
        self.plan = NetnsPlan(network, preferred_block(network))
        self.user = user or f"{os.getuid()}:{os.getgid()}"

    # ---- facts ---------------------------------------------------------------------------------
    def _spec(self) -> dict:
        if self.state_dir is None:
            raise BackendError("the docker backend needs the network's state directory")
        return json.loads((self.state_dir / "spec.json").read_text())

    def image(self) -> str:
        spec = self._spec()
        return image_for(spec["client"], spec.get("image"))

    def _record(self) -> dict:
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError, TypeError):
            return {"disconnected": []}

    def _save(self, record: dict) -> None:
        if self.state_dir is not None and self.state_dir.exists():
            write_json_atomic(self.state_dir / STATE_FILE, record)

    def _specs_for(self, node: NodePlan, argv: list[str], env: dict[str, str]) -> dict:
        spec = NetworkSpec.model_validate(self._spec())
        # the node's organization may run another client than the network's (a mixed network);
        # the spec's `image` overrides the network client's image only
        client = spec.client_of(node.org)
        image = image_for(client, spec.image if client == spec.client else None)
        return {"network": self.network, "client": client, "image": image,
                "node": node, "argv": argv, "env": env, "node_dir": self.state_dir / "nodes" / node.name,
                "genesis": StateDir(self.state_dir).genesis_file_of(client, spec.client), "user": self.user}

    # ---- Backend protocol -----------------------------------------------------------------------
    def host_for(self, org_index: int, node_index: int) -> str:
        """A static address on the consortium's docker network (what peers dial)."""
        return self.plan.node_address(org_index, node_index)

    def prepare(self, org_names: list[str]) -> None:
        for i in range(len(org_names)):
            self.plan.org_prefix(i)
        self.engine.ensure_network(network_spec(self.network, self.plan))

    def run(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
        code, output = self.engine.run_once(oneoff_spec(**self._specs_for(node, argv, env)), timeout)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(output)
        if code != 0:
            raise BackendError(f"node {node.name}: '{Path(argv[0]).name}' in {self.image()} failed with exit code {code}",
                               hint=f"see {log_path}")

    def start(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, marker: str) -> NodeProcess:
        # mount the directory of the IPC socket the command names, if it names one
        socket = ipc_socket_in(argv)
        admin_dir = socket.parent if socket is not None else None
        spec = container_spec(**self._specs_for(node, argv, env), admin_dir=admin_dir)
        self.engine.remove(spec["name"])  # a stopped container of an earlier start
        container_id, pid = self.engine.create_and_start(spec)
        return NodeProcess(name=node.name, pid=pid, marker=container_id)

    def _name(self, proc: NodeProcess) -> str:
        return container_name(self.network, proc.name)

    def is_alive(self, proc: NodeProcess) -> bool:
        state = self.engine.state(self._name(proc))
        return bool(state and state["id"] == proc.marker and state["status"] in LIVE_STATES)

    def _keep_logs(self, proc: NodeProcess) -> None:
        if self.state_dir is None:
            return
        log_path = self.state_dir / "nodes" / proc.name / "node.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(self.engine.logs(self._name(proc)))

    def stop(self, proc: NodeProcess, timeout: float = 20.0) -> None:
        if not self.is_alive(proc):
            return
        name = self._name(proc)
        if self.engine.state(name)["status"] == "paused":
            self.engine.unpause(name)
        self.engine.stop(name, timeout)
        self._keep_logs(proc)
        self.engine.remove(name)

    def kill(self, proc: NodeProcess) -> None:
        if not self.is_alive(proc):
            return
        self.engine.kill(self._name(proc))
        self._keep_logs(proc)
        self.engine.remove(self._name(proc))

    def pause(self, proc: NodeProcess) -> None:
        self.engine.pause(self._name(proc))

    def resume(self, proc: NodeProcess) -> None:
        self.engine.unpause(self._name(proc))

    # ---- faults ---------------------------------------------------------------------------------
    def _nodes_by_org(self) -> dict[str, list[dict]]:
        nodes = json.loads((self.state_dir / "network.json").read_text())["nodes"]
        out: dict[str, list[dict]] = {}
        for n in nodes:
            out.setdefault(n["org"], []).append(n)
        return out

    def partition(self, groups: list[list[str]]) -> None:
        """Keep the largest group on the network; disconnect every other organization's containers.
        Docker can only take a container off the network as a whole, so every other group must be
        a single organization (it is cut off from everyone, as the partition asks)."""
        by_org = self._nodes_by_org()
        for group in groups:
            for org in group:
                if org not in by_org:
                    raise BackendError(f"partition names unknown organization {org!r}; organizations: {', '.join(by_org)}")
        keep = max(groups, key=len) if groups else []
        cut = [g for g in groups if g is not keep]
        if any(len(g) > 1 for g in cut):
            raise NotSupportedError("the docker backend partitions by disconnecting containers from the network, so "
                                    "every group but the largest must be a single organization",
                                    hint="use 'backend: netns' for arbitrary partitions")
        self.heal()
        record = self._record()
        for group in cut:
            for node in by_org[group[0]]:
                entry = {"container": container_name(self.network, node["name"]), "address": node["host"]}
                record.setdefault("disconnected", []).append(entry)
                self._save(record)
                self.engine.disconnect(network_name(self.network), entry["container"])

    def delay(self, org: str, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> None:
        raise NotSupportedError("the docker backend cannot delay one organization's link (tc would need NET_ADMIN "
                                "inside the node containers)", hint="use 'backend: netns' in the network spec")

    def heal(self) -> None:
        record = self._record()
        for entry in record.get("disconnected", []):
            if self.engine.state(entry["container"]) is not None:
                self.engine.connect(network_name(self.network), entry["container"], entry["address"])
        record["disconnected"] = []
        self._save(record)

    def teardown(self) -> None:
        """Remove every container labelled with this network, then the network."""
        for name in self.engine.containers({f"{LABEL}.network": self.network}):
            self.engine.remove(name)
        self.engine.remove_network(network_name(self.network))
