"""Docker backend: everything it renders (network, container specs, mounts, commands, labels,
ports) and every engine call it makes, through a recording fake of the DockerEngine seam.
The live test at the end skips, with the reason, when no Docker engine answers."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from testbed.backends import get_backend
from testbed.backends.docker import (
    LABEL,
    DockerBackend,
    DockerEngine,
    container_spec,
    network_spec,
    oneoff_spec,
    split_command,
)
from testbed.backends.images import PINNED_IMAGES, image_for
from testbed.backends.netns_plan import NetnsPlan, preferred_block
from testbed.clients import get_client
from testbed.errors import BackendError, NotSupportedError, SpecError
from testbed.keys import NetworkKeys
from testbed.network import node_names, plan_nodes
from testbed.spec.network import NetworkSpec

RANGE = ipaddress.ip_network("198.18.0.0/15")


def make_spec(**changes) -> NetworkSpec:
    data = {"name": "dk", "client": "geth", "backend": "docker", "ports": {"base": 30400},
            "organizations": [{"name": "acme"}, {"name": "globex"}, {"name": "initech", "validators": 1, "members": 1}]}
    data.update(changes)
    return NetworkSpec.model_validate(data)


class FakeEngine:
    """Records every call; containers live in a dict."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.containers_: dict[str, dict] = {}
        self.networks: dict[str, dict] = {}
        self.oneoff_exit = 0
        self.oneoffs: dict[str, dict] = {}

    def ensure_network(self, spec):
        self.calls.append(("ensure_network", spec["name"]))
        self.networks.setdefault(spec["name"], spec)

    def remove_network(self, name):
        self.calls.append(("remove_network", name))
        self.networks.pop(name, None)

    def create_and_start(self, spec):
        self.calls.append(("create_and_start", spec["name"]))
        cid, pid = f"id-{spec['name']}", 4000 + len(self.calls)  # a pid of its own per container start
        self.containers_[spec["name"]] = {"id": cid, "status": "running", "pid": pid, "spec": spec}
        return cid, pid

    def run_once(self, spec, timeout):
        self.calls.append(("run_once", spec["name"], tuple(spec["entrypoint"] + spec["command"])))
        self.oneoffs[spec["name"]] = spec
        return self.oneoff_exit, b"init output\n"

    def state(self, name):
        c = self.containers_.get(name)
        return None if c is None else {k: c[k] for k in ("id", "status", "pid")}

    def stop(self, name, timeout):
        self.calls.append(("stop", name, timeout))
        self.containers_[name]["status"] = "exited"

    def kill(self, name):
        self.calls.append(("kill", name))
        self.containers_[name]["status"] = "exited"

    def pause(self, name):
        self.calls.append(("pause", name))
        self.containers_[name]["status"] = "paused"

    def unpause(self, name):
        self.calls.append(("unpause", name))
        self.containers_[name]["status"] = "running"

    def logs(self, name):
        return b"node log\n"

    def remove(self, name):
        self.calls.append(("remove", name))
        self.containers_.pop(name, None)

    def containers(self, label_filter):
        return [n for n, c in self.containers_.items()
                if all(c["spec"]["labels"].get(k) == v for k, v in label_filter.items())]

    def disconnect(self, network, container):
        self.calls.append(("disconnect", network, container))

    def connect(self, network, container, ipv4_address):
        self.calls.append(("connect", network, container, ipv4_address))


@pytest.fixture
def rendered(tmp_path):
    """A state dir as Network._write_state leaves it for a docker network, and the node plans."""
    spec = make_spec()
    engine = FakeEngine()
    backend = DockerBackend(network=spec.name, state_dir=tmp_path, engine=engine, user="1000:1000")
    keys = NetworkKeys.generate(node_names(spec), {o.name: o.accounts for o in spec.organizations})
    nodes = plan_nodes(spec, keys, backend)
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (tmp_path / "genesis.json").write_text("{}")
    (tmp_path / "network.json").write_text(json.dumps({
        "binary": "/cache/geth-v1.13.15/bin/geth",
        "nodes": [{"name": n.name, "org": n.org, "role": n.role, "host": n.host} for n in nodes]}))
    return spec, backend, engine, nodes


def test_registry_has_docker(tmp_path):
    assert isinstance(get_backend("docker", network="x", state_dir=tmp_path), DockerBackend)


def test_images_are_pinned_and_overridable():
    for client, ref in PINNED_IMAGES.items():
        name, _, tag = ref.rpartition(":")
        assert name and tag and tag != "latest", ref
    assert image_for("geth") == "ethereum/client-go:v1.13.15"
    assert image_for("besu", "registry.example/besu:1@sha256:" + "0" * 64).startswith("registry.example/")
    with pytest.raises(SpecError):
        image_for("nethermind")
    assert make_spec(image="my/geth:1").image == "my/geth:1"


def test_network_is_one_bridge_on_the_benchmarking_range_without_masquerade():
    plan = NetnsPlan("dk", preferred_block("dk"))
    spec = network_spec("dk", plan)
    assert spec["name"] == "tb-dk" and spec["driver"] == "bridge"
    assert ipaddress.ip_network(spec["ipam"]["subnet"]).subnet_of(RANGE)
    assert spec["ipam"]["gateway"] == plan.bridge_address
    assert spec["options"]["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    assert spec["labels"] == {f"{LABEL}.network": "dk"}


def test_nodes_get_static_addresses_on_that_network(rendered):
    spec, backend, _, nodes = rendered
    subnet = ipaddress.ip_network(network_spec(spec.name, backend.plan)["ipam"]["subnet"])
    assert len({n.host for n in nodes}) == len(nodes)
    assert all(ipaddress.ip_address(n.host) in subnet for n in nodes)


def test_container_spec_for_a_geth_node(rendered, tmp_path):
    spec, backend, _, nodes = rendered
    node = nodes[0]
    node_dir = tmp_path / "nodes" / node.name
    argv = get_client("geth").command(Path("/cache/geth-v1.13.15/bin/geth"), spec, node, node_dir, nodes[1:])
    c = container_spec(network="dk", client="geth", image=image_for("geth"), node=node, argv=argv,
                       env={}, node_dir=node_dir, genesis=tmp_path / "genesis.json", user="1000:1000")
    assert c["name"] == f"tb-dk-{node.name}"
    assert c["image"] == "ethereum/client-go:v1.13.15"
    assert c["entrypoint"] == ["geth"] and c["command"] == argv[1:]
    assert "--http.addr" in c["command"] and c["command"][c["command"].index("--http.addr") + 1] == node.host
    assert c["volumes"] == {str(node_dir): {"bind": str(node_dir), "mode": "rw"},
                            str(tmp_path / "genesis.json"): {"bind": str(tmp_path / "genesis.json"), "mode": "ro"}}
    assert c["ports"] == {f"{p}/tcp": ("127.0.0.1", p) for p in (node.ports.http, node.ports.ws, node.ports.metrics)}
    assert all(host == "127.0.0.1" for host, _ in c["ports"].values())
    assert c["network"] == "tb-dk" and c["ipv4_address"] == node.host
    assert c["labels"] == {f"{LABEL}.network": "dk", f"{LABEL}.node": node.name, f"{LABEL}.org": node.org,
                           f"{LABEL}.role": "validator"}
    assert c["user"] == "1000:1000" and c["restart_policy"] == {"Name": "no"}
    assert c["working_dir"] == str(node_dir)


def test_besu_and_goquorum_containers(rendered, tmp_path):
    spec, _, _, nodes = rendered
    node = nodes[0]
    besu_spec = make_spec(client="besu", consensus={"engine": "qbft"})
    node_dir = tmp_path / "nodes" / node.name
    argv = get_client("besu").command(Path("/opt/besu/bin/besu"), besu_spec, node, node_dir, nodes[1:])
    c = container_spec(network="dk", client="besu", image=image_for("besu"), node=node, argv=argv, env={},
                       node_dir=node_dir, genesis=tmp_path / "genesis.json", user="0:0")
    assert c["image"] == PINNED_IMAGES["besu"] and c["entrypoint"] == ["besu"]
    assert f"--config-file={node_dir / 'config.toml'}" in c["command"]
    # Besu's init copies the genesis into the node directory: a plain `cp` inside the image
    init = get_client("besu").init_command(Path("/opt/besu/bin/besu"), besu_spec, node, node_dir, tmp_path / "genesis.json")
    assert split_command("besu", init) == (["cp"], init[1:])
    quorum = make_spec(client="goquorum", consensus={"engine": "qbft"})
    q_env = get_client("goquorum").environment(quorum, node)
    c = oneoff_spec(network="dk", client="goquorum", image=image_for("goquorum"), node=node,
                    argv=["/cache/goquorum/bin/geth", "--datadir", str(node_dir / "data"), "init", "g.json"],
                    env=q_env, node_dir=node_dir, genesis=tmp_path / "genesis.json", user="0:0")
    assert c["image"] == "quorumengineering/quorum:24.4.1" and c["entrypoint"] == ["geth"]
    assert c["environment"] == {"PRIVATE_CONFIG": "ignore"} and c["network_mode"] == "none"


def test_backend_lifecycle_calls_the_engine(rendered, tmp_path):
    spec, backend, engine, nodes = rendered
    backend.prepare([o.name for o in spec.organizations])
    assert engine.calls == [("ensure_network", "tb-dk")]
    node = nodes[0]
    log = tmp_path / "nodes" / node.name / "node.log"
    backend.run(node, ["/cache/geth-v1.13.15/bin/geth", "--datadir", "d", "init", "g"], {}, log, timeout=60)
    assert engine.calls[-1] == ("run_once", f"tb-dk-{node.name}-init", ("geth", "--datadir", "d", "init", "g"))
    assert log.read_bytes() == b"init output\n"
    proc = backend.start(node, ["/cache/geth-v1.13.15/bin/geth", "--port", "1"], {}, log, marker="m")
    container = engine.containers_[f"tb-dk-{node.name}"]
    # the node's process is that container: its host pid and id, started with the node's command
    assert (proc.pid, proc.marker) == (container["pid"], container["id"])
    assert container["spec"]["entrypoint"] + container["spec"]["command"] == ["geth", "--port", "1"]
    assert engine.calls[-2:] == [("remove", f"tb-dk-{node.name}"), ("create_and_start", f"tb-dk-{node.name}")]
    assert backend.is_alive(proc)
    backend.pause(proc)
    assert backend.is_alive(proc)  # a paused node is alive
    backend.stop(proc, timeout=7)
    assert engine.calls[-3:] == [("unpause", f"tb-dk-{node.name}"), ("stop", f"tb-dk-{node.name}", 7),
                                 ("remove", f"tb-dk-{node.name}")]
    assert log.read_bytes() == b"node log\n"  # the container's log is kept in the node's log file
    assert not backend.is_alive(proc)
    proc = backend.start(node, ["/cache/geth-v1.13.15/bin/geth"], {}, log, marker="m")
    backend.kill(proc)
    assert ("kill", f"tb-dk-{node.name}") in engine.calls and not backend.is_alive(proc)
    backend.start(nodes[1], ["/cache/geth-v1.13.15/bin/geth"], {}, log, marker="m")
    backend.teardown()
    assert engine.calls[-2:] == [("remove", f"tb-dk-{nodes[1].name}"), ("remove_network", "tb-dk")]


def test_failed_init_names_the_log(rendered, tmp_path):
    _, backend, engine, nodes = rendered
    engine.oneoff_exit = 1
    with pytest.raises(BackendError, match="exit code 1") as err:
        backend.run(nodes[0], ["/x/geth", "init"], {}, tmp_path / "n.log", timeout=5)
    assert "n.log" in str(err.value)


def test_partition_disconnects_and_heal_reconnects_at_the_same_address(rendered):
    spec, backend, engine, nodes = rendered
    backend.partition([["acme", "globex"], ["initech"]])
    initech = [n for n in nodes if n.org == "initech"]
    assert [c for c in engine.calls if c[0] == "disconnect"] == [("disconnect", "tb-dk", f"tb-dk-{n.name}") for n in initech]
    for n in initech:
        engine.containers_[f"tb-dk-{n.name}"] = {"id": "x", "status": "running", "pid": 1, "spec": {"labels": {}}}
    backend.heal()
    assert [c for c in engine.calls if c[0] == "connect"] == [("connect", "tb-dk", f"tb-dk-{n.name}", n.host) for n in initech]
    with pytest.raises(NotSupportedError, match="single organization"):
        backend.partition([["acme", "globex"], ["initech", "umbrella"]][:1] + [["initech", "globex"]])
    with pytest.raises(BackendError, match="unknown organization"):
        backend.partition([["acme"], ["nobody"]])
    with pytest.raises(NotSupportedError, match="netns"):
        backend.delay("acme", 100)


def test_no_engine_is_a_clear_error():
    class Broken:
        def ping(self):
            raise ConnectionError("no socket")

    engine = DockerEngine()
    engine._client = None
    import docker

    real = docker.from_env
    docker.from_env = lambda: Broken()
    try:
        with pytest.raises(BackendError, match="no Docker engine answers") as err:
            engine.ping()
        assert "dockerd" in str(err.value)
    finally:
        docker.from_env = real


def _engine_answers() -> str | None:
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception as exc:  # no socket, no daemon, no permission
        return f"no Docker engine answers here (docker.from_env().ping(): {exc.__class__.__name__}); see docs/docker.md"


@pytest.mark.integration
@pytest.mark.skipif(_engine_answers() is not None, reason=_engine_answers() or "")
def test_live_engine_creates_and_removes_the_consortium_network(tmp_path):
    backend = DockerBackend(network="tb-live-probe", state_dir=tmp_path)
    try:
        backend.prepare(["a"])
        assert backend.engine.client.networks.list(names=["tb-tb-live-probe"])
    finally:
        backend.teardown()
    assert not backend.engine.client.networks.list(names=["tb-tb-live-probe"])
