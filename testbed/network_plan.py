"""Planning a network from its spec (pure, no process started): node names, each node's plan
(address, ports, key), the client binary a backend runs, and the check that the ports are free.
Network.create and testbed.membership.join plan with these; so does the compose export."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Callable

from testbed import toolchain
from testbed.clients import get_client
from testbed.backends.images import IMAGE_ENTRYPOINT
from testbed.clients.base import NodePlan, NodePorts
from testbed.errors import StateError
from testbed.keys import NetworkKeys, write_secret
from testbed.spec.network import NetworkSpec

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


def genesis_blocks(spec: NetworkSpec, nodes: list[NodePlan], keys: NetworkKeys) -> dict[str, dict]:
    """The network's one genesis block in each of its clients' formats (two in a mixed network):
    the validator nodes' addresses, every funded account with the spec's balance."""
    validators = [n.address for n in nodes if n.is_validator]
    alloc = {addr: spec.account_balance_eth * WEI_PER_ETH for addr in keys.funded_addresses()}
    return {name: get_client(name).genesis(spec, validators, alloc) for name in spec.clients}


def write_node_files(spec: NetworkSpec, node: NodePlan, peers: list[NodePlan], directory: Path, *,
                     secrets: bool = True) -> list[str]:
    """Write a node's files (its client adapter's `node_files`) under `directory`: secret ones 0600
    (only with `secrets`), the others as they are. Returns the paths of the secret files, relative
    to `directory`. The state directory (Network.render_node_files) and the compose export use it."""
    written = []
    for rendered in get_client(spec.client_of(node.org)).node_files(spec, node, peers):
        target = directory / rendered.path
        if rendered.secret:
            if secrets:
                write_secret(target, rendered.content)
                written.append(rendered.path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rendered.content)
    return written
