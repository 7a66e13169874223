"""What the ansible backend renders (pure): the inventory generated from the spec, the
host map of a hosts file, and the translation of a node's command line into host paths.

Inventory: one group per organization (`org_<name>`), one member host per organization
carrying its nodes (name, address, ports, the files to lay out and which are secret).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.backends.images import image_for
from testbed.backends.ssh_lab import SshHost, ssh_options
from testbed.errors import SpecError

REMOTE_ROOT = "/opt/cti-testbed"
SERVICE_MANAGERS = ("systemd", "supervised")
# Files of a node directory that are the node's own output, never laid out from the controller.
NOT_LAID_OUT = ("node.log", "init.log", "pid.json", "node.pid")


def group_name(org: str) -> str:
    """Ansible group names may not contain '-'."""
    return "org_" + org.replace("-", "_")


@dataclass(frozen=True)
class MemberHost:
    """One organization's host, as the controller reaches it and as the playbooks lay it out."""

    ssh: SshHost
    root: str  # the host's testbed directory for this network
    service_manager: str  # "systemd" | "supervised"

    @property
    def org(self) -> str:
        return self.ssh.org


def node_files(node_dir: Path) -> tuple[list[str], list[dict]]:
    """Directories and files of a rendered node directory; a file not readable by group or
    others is secret (the state dir writes keys and passwords 0600) and is laid out 0600."""
    dirs: list[str] = []
    files: list[dict] = []
    for path in sorted(node_dir.rglob("*")):
        rel = path.relative_to(node_dir).as_posix()
        if path.is_dir():
            dirs.append(rel)
        elif path.is_file() and path.name not in NOT_LAID_OUT:
            files.append({"path": rel, "secret": not (path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))})
    return dirs, files


# Clients whose binary the toolchain builds here (geth, GoQuorum) are shipped to the hosts as a
# file; Besu runs from its pinned container image on the host.
BINARY_CLIENTS = ("geth", "goquorum")


def runtime_of(client: str) -> str:
    return "binary" if client in BINARY_CLIENTS else "container"


def inventory(*, network: dict, spec: dict, hosts: list[MemberHost], state_dir: Path, control_dir: Path) -> dict:
    """The inventory document (YAML-ready) for a network's member hosts."""
    client = spec["client"]
    runtime = runtime_of(client)
    by_org = {h.org: h for h in hosts}
    groups: dict = {}
    for org in [o["name"] for o in spec["organizations"]]:
        host = by_org[org]
        nodes = []
        for node in (n for n in network["nodes"] if n["org"] == org):
            node_dir = state_dir / "nodes" / node["name"]
            dirs, files = node_files(node_dir)
            nodes.append({"name": node["name"], "role": node["role"], "host": node["host"],
                          "http_port": node["ports"]["http"], "p2p_port": node["ports"]["p2p"],
                          "src": str(node_dir), "dirs": dirs, "files": files})
        ssh = host.ssh
        groups[group_name(org)] = {"hosts": {org: {
            "ansible_host": ssh.address,
            "ansible_port": ssh.port,
            "ansible_user": ssh.user,
            "ansible_ssh_private_key_file": ssh.key_file,
            "ansible_ssh_common_args": " ".join(ssh_options(ssh, control_dir)),
            "testbed_org": org,
            "testbed_root": host.root,
            "testbed_service_manager": host.service_manager,
            "testbed_nodes": nodes,
        }}}
    return {"all": {
        "vars": {
            "ansible_python_interpreter": "/usr/bin/python3",
            "testbed_network": spec["name"],
            "testbed_client": client,
            "testbed_runtime": runtime,
            "testbed_binary_src": network["binary"] if runtime == "binary" else "",
            "testbed_binary_name": Path(network["binary"]).name if runtime == "binary" else "",
            "testbed_image": image_for(client, spec.get("image")) if runtime == "container" else "",
            "testbed_genesis_src": str(state_dir / "genesis.json"),
        },
        "children": groups,
    }}


def remote_argv(argv: list[str], *, state_dir: Path, binary: str, host: MemberHost, runtime: str,
                image: str = "", node: str = "", network: str = "") -> list[str]:
    """A node's command line with the controller's paths replaced by the host's.

    The state dir's node directories and genesis move under the host's testbed directory; the
    client binary becomes the host's copy, or (container runtime) a `docker run` of the pinned
    image with the node directory mounted at the same path.
    """
    local = str(state_dir).rstrip("/") + "/"
    remote = host.root.rstrip("/") + "/"
    moved = [arg.replace(local, remote) for arg in argv]
    if not moved or moved[0] != binary:
        return moved
    if runtime == "binary":
        return [f"{remote}bin/{Path(binary).name}", *moved[1:]]
    node_dir = f"{remote}nodes/{node}"
    return ["docker", "run", "--rm", "--name", f"tb-{network}-{node}", "--network", "host",
            "--user", "0:0", "-v", f"{node_dir}:{node_dir}", "-v", f"{remote}genesis.json:{remote}genesis.json:ro",
            image, *moved[1:]]


def load_hosts_file(path: Path, orgs: list[str], network: str) -> list[MemberHost]:
    """An operator's member hosts: a YAML list in the spec's organization order,
    `- {org: NAME, address: IP, user: root, key: PATH, known_hosts: PATH, service_manager: systemd, root: DIR}`."""
    try:
        entries = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the ansible hosts file: {exc}") from None
    if not isinstance(entries, list) or [e.get("org") if isinstance(e, dict) else None for e in entries] != orgs:
        raise SpecError(f"{path}: the hosts file must list one entry per organization in the spec's order: {', '.join(orgs)}")
    hosts = []
    for entry in entries:
        allowed = {"org", "address", "user", "key", "known_hosts", "service_manager", "root", "port"}
        unknown = set(entry) - allowed
        if unknown or "address" not in entry:
            raise SpecError(f"{path}: entry {entry.get('org')!r}: needs 'address'; allowed keys: {', '.join(sorted(allowed))}"
                            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""))
        manager = entry.get("service_manager", "systemd")
        if manager not in SERVICE_MANAGERS:
            raise SpecError(f"{path}: entry {entry['org']!r}: service_manager must be one of {', '.join(SERVICE_MANAGERS)}")
        ssh = SshHost(org=entry["org"], address=str(entry["address"]), user=entry.get("user", "root"),
                      key_file=os.path.expanduser(entry.get("key", "~/.ssh/id_ed25519")),
                      known_hosts=os.path.expanduser(entry.get("known_hosts", "~/.ssh/known_hosts")),
                      port=int(entry.get("port", 22)))
        hosts.append(MemberHost(ssh=ssh, root=entry.get("root", f"{REMOTE_ROOT}/{network}"), service_manager=manager))
    return hosts
