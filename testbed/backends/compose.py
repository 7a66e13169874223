"""`testbed export compose SPEC DIR`: a docker-compose project an operator carries to a machine with
Docker (pure rendering; nothing here talks to an engine).

What DIR holds, laid out like a network's state directory:

    docker-compose.yml      one service per node (the client's pinned official image, its command
                            line as the docker backend renders it), a one-off `<node>-init` service
                            that initialises the node's database first, and `prometheus`
    .env                    CTI_UID / CTI_GID: the user the containers run as (the exporter's)
    genesis.json            the network's genesis block (genesis-<client>.json beside it in a
                            mixed GoQuorum + Besu network: the same block in Besu's format)
    nodes/<node>/           the node's files: static and permissioned node lists, its key (0600)
    keys/                   every key of the consortium (0600): node keys, accounts, operator
    prometheus/prometheus.yml   scrapes every node's metrics endpoint

Node directories are mounted read-write at the path the command line names; every secret file is
mounted again over itself read-only, and the genesis read-only. Containers sit on one bridge
network in the network's block of 198.18.0.0/15 (static addresses, no masquerading: they reach
nothing outside); HTTP, WS and metrics are published on the host's 127.0.0.1 only; the admin and
validator-vote namespaces are on each node's IPC socket inside its directory. Containers restart
unless stopped (an operator's network, not a fault experiment).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from testbed.backends.docker import DockerBackend, container_spec, network_spec, oneoff_spec
from testbed.backends.images import IMAGE_ENTRYPOINT, PROMETHEUS_IMAGE, image_for
from testbed.clients import get_client
from testbed.errors import StateError
from testbed.keys import NetworkKeys
from testbed.monitoring.prometheus import node_scrape_jobs
from testbed.spec.network import NetworkSpec
from testbed.state import StateDir

CONTAINER_ROOT = Path("/opt/cti-testbed")  # where a node's files are inside its container
NETWORK_KEY = "consortium"
PROMETHEUS_PORT = 9090


def export_compose(spec: NetworkSpec, out_dir: Path) -> dict:
    """Write the project into `out_dir` (absent or empty); returns a summary. Written to a
    temporary directory beside it and moved into place at the end: nothing half-written is left."""
    from testbed.network_plan import genesis_blocks, node_names, plan_nodes

    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StateError(f"{out_dir} exists and is not an empty directory", hint="give a new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        keys = NetworkKeys.generate(node_names(spec), {o.name: o.accounts for o in spec.organizations})
        backend = DockerBackend(network=spec.name)
        nodes = plan_nodes(spec, keys, backend)
        root = CONTAINER_ROOT / spec.name
        keys.save(tmp / "keys")
        for client, genesis in genesis_blocks(spec, nodes, keys).items():
            (tmp / _genesis_name(client, spec.client)).write_text(json.dumps(genesis, indent=2) + "\n")
        services: dict[str, dict] = {}
        for node in nodes:
            services.update(_node_services(spec, node, [n for n in nodes if n.name != node.name], tmp, root))
        subnet = network_spec(spec.name, backend.plan)["ipam"]
        monitor_address = str(backend.plan.subnet.network_address + 10)  # in the bridge's /24, no org's
        (tmp / "prometheus").mkdir()
        (tmp / "prometheus" / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "5s", "external_labels": {"network": spec.name}},
            "scrape_configs": node_scrape_jobs(spec, nodes)}, sort_keys=False))
        services["prometheus"] = {
            "image": PROMETHEUS_IMAGE,
            "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
            "volumes": ["./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"],
            "ports": [f"127.0.0.1:{PROMETHEUS_PORT}:9090"],
            "networks": {NETWORK_KEY: {"ipv4_address": monitor_address}},
            "restart": "unless-stopped",
        }
        compose = {
            "name": f"cti-{spec.name}",
            "services": services,
            "networks": {NETWORK_KEY: {
                "name": f"tb-{spec.name}", "driver": "bridge",
                "driver_opts": {"com.docker.network.bridge.enable_ip_masquerade": "false"},
                "ipam": {"config": [{"subnet": subnet["subnet"], "gateway": subnet["gateway"]}]},
            }},
        }
        (tmp / "docker-compose.yml").write_text(
            f"# {spec.name}: {spec.client} {spec.consensus.engine}, {len(spec.organizations)} organizations, "
            f"{len(nodes)} nodes (testbed export compose). Start: docker compose up -d\n"
            + yaml.safe_dump(compose, sort_keys=False, width=120, default_flow_style=None))
        (tmp / ".env").write_text(f"CTI_UID={os.getuid()}\nCTI_GID={os.getgid()}\n")
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"dir": str(out_dir), "nodes": [n.name for n in nodes], "services": list(services),
            "images": sorted({s["image"] for s in services.values()})}


def _genesis_name(client: str, network_client: str) -> str:
    """The genesis file's name, as in a network's state directory."""
    return StateDir(Path(".")).genesis_file_of(client, network_client).name


def _node_services(spec: NetworkSpec, node, peers, out: Path, root: Path) -> dict[str, dict]:
    """The node's service and its init service; writes the node's files under out/nodes/<node>."""
    from testbed.network_plan import write_node_files

    client = spec.client_of(node.org)
    adapter = get_client(client)
    node_dir, host_dir = root / "nodes" / node.name, out / "nodes" / node.name
    genesis_name = _genesis_name(client, spec.client)
    genesis = root / genesis_name
    secrets = write_node_files(spec, node, peers, host_dir)
    (host_dir / "ipc").mkdir(mode=0o700, parents=True, exist_ok=True)
    binary = Path(IMAGE_ENTRYPOINT[client])
    image = image_for(client, spec.image if client == spec.client else None)
    mounts = [f"./nodes/{node.name}:{node_dir}", f"./{genesis_name}:{genesis}:ro"] + \
        [f"./nodes/{node.name}/{path}:{node_dir / path}:ro" for path in secrets]
    common = {"network": spec.name, "client": client, "image": image, "node": node,
              "env": adapter.environment(spec, node), "node_dir": node_dir, "genesis": genesis,
              "user": "${CTI_UID}:${CTI_GID}"}
    argv = adapter.command(binary, spec, node, node_dir, peers, ipc=node_dir / "ipc" / f"{client}.ipc")
    run = container_spec(**common, argv=argv)
    service = {
        "image": image, "entrypoint": run["entrypoint"], "command": run["command"], "environment": run["environment"],
        "user": run["user"], "hostname": run["hostname"], "working_dir": run["working_dir"], "volumes": mounts,
        "ports": [f"{host}:{port}:{inside.split('/')[0]}" for inside, (host, port) in run["ports"].items()],
        "networks": {NETWORK_KEY: {"ipv4_address": node.host}}, "labels": run["labels"],
        "restart": "unless-stopped", "stop_signal": run["stop_signal"], "stop_grace_period": "30s",
    }
    services = {node.name: service}
    init_argv = adapter.init_command(binary, spec, node, node_dir, genesis)
    if init_argv:
        init = oneoff_spec(**common, argv=init_argv)
        services[f"{node.name}-init"] = {
            "image": image, "entrypoint": init["entrypoint"], "command": init["command"],
            "environment": init["environment"], "user": init["user"], "working_dir": init["working_dir"],
            "volumes": list(mounts), "network_mode": "none", "labels": init["labels"], "restart": "no",
        }
        service["depends_on"] = {f"{node.name}-init": {"condition": "service_completed_successfully"}}
    return services

