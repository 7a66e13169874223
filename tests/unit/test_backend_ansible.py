"""Ansible backend: the generated inventory, host paths, hosts file, sshd config, the
playbooks' syntax (ansible-playbook --syntax-check), and the backend's calls through fakes of
its two seams (the playbook runner and the lab hosts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.backends import get_backend
from testbed.backends.ansible import AnsibleBackend
from testbed.backends.ansible_inventory import MemberHost, inventory, load_hosts_file, node_files, remote_argv
from testbed.backends.ansible_runs import PLAYBOOKS, PlaybookResult
from testbed.backends.ssh_lab import SshHost, ssh_argv, sshd_config
from testbed.clients import get_client
from testbed.errors import BackendError, NotSupportedError, SpecError
from testbed.keys import NetworkKeys, write_secret
from testbed.network import node_names
from testbed.spec.network import NetworkSpec

BINARY = "/cache/geth-v1.13.15/bin/geth"


def make_spec(**changes) -> NetworkSpec:
    data = {"name": "an", "backend": "ansible", "ports": {"base": 30200},
            "organizations": [{"name": "acme-cert"}, {"name": "globex", "validators": 1, "members": 1}]}
    data.update(changes)
    return NetworkSpec.model_validate(data)


class FakeLab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.up_calls: list[list[str]] = []
        self.down_calls = 0
        self.alive = False
        self.netns = self

    def address(self, org_index: int) -> str:
        return f"198.18.{org_index + 1}.10"

    def host_root(self, org: str) -> Path:
        return self.root / "hosts" / org

    def hosts(self, orgs):
        return [SshHost(org=o, address=self.address(i), user="root", key_file="/k", known_hosts="/kh")
                for i, o in enumerate(orgs)]

    def up(self, orgs):
        self.up_calls.append(orgs)
        self.alive = True

    def is_up(self, orgs):
        return self.alive

    def down(self):
        self.down_calls += 1
        self.alive = False

    def partition(self, groups):
        self.partitioned = groups


class FakeRunner:
    def __init__(self) -> None:
        self.runs: list[dict] = []
        self.reported_pids: list[int] = []
        self.fail: str | None = None

    def run(self, playbook, *, inventory, extravars, limit, ident, timeout, progress):
        self.runs.append({"playbook": playbook, "extravars": extravars, "limit": limit, "ident": ident,
                          "inventory": yaml.safe_load(Path(inventory).read_text())})
        progress(f"ansible {playbook}")
        messages = {}
        if extravars.get("action") == "start":  # the play reports the started node's pid on its host
            self.reported_pids.append(31000 + len(self.runs))
            messages = {"testbed_node_pid": [str(self.reported_pids[-1])]}
        if self.fail and self.fail == extravars.get("action", playbook):
            return PlaybookResult(ident=ident, status="failed", rc=2, artifact_dir=Path("/runs") / ident,
                                  failures=["globex: Wait for eth_blockNumber: globex-v1 does not answer"])
        return PlaybookResult(ident=ident, status="successful", rc=0, artifact_dir=Path("/runs") / ident, messages=messages)


@pytest.fixture
def state(tmp_path):
    """A state dir as Network._write_state leaves it, with the backend (fake runner and lab)."""
    spec = make_spec()
    lab, runner = FakeLab(tmp_path), FakeRunner()
    backend = AnsibleBackend(network=spec.name, state_dir=tmp_path, runner=runner, lab=lab)
    backend.control_dir = tmp_path / "cp"  # not the shared temp dir
    from testbed.network import plan_nodes

    keys = NetworkKeys.generate(node_names(spec), {o.name: o.accounts for o in spec.organizations})
    nodes = plan_nodes(spec, keys, backend)
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    (tmp_path / "genesis.json").write_text("{}")
    (tmp_path / "network.json").write_text(json.dumps({
        "binary": BINARY, "nodes": [{"name": n.name, "org": n.org, "role": n.role, "host": n.host,
                                     "ports": vars(n.ports)} for n in nodes]}))
    client = get_client("geth")
    for node in nodes:
        for rendered in client.node_files(spec, node, [p for p in nodes if p is not node]):
            target = tmp_path / "nodes" / node.name / rendered.path
            if rendered.secret:
                write_secret(target, rendered.content)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(rendered.content)
    progress: list[str] = []
    backend.attach_progress(progress.append)
    return {"spec": spec, "backend": backend, "runner": runner, "lab": lab, "nodes": nodes, "dir": tmp_path,
            "progress": progress}


def test_registry_has_ansible(tmp_path):
    assert isinstance(get_backend("ansible", network="x", state_dir=tmp_path), AnsibleBackend)


def test_every_node_of_an_org_is_on_its_one_host(state):
    nodes = state["nodes"]
    assert [n.host for n in nodes] == ["198.18.1.10", "198.18.2.10", "198.18.2.10"]
    assert len({n.ports.http for n in nodes}) == 3  # one host, distinct ports


def test_node_files_marks_0600_files_secret(state):
    dirs, files = node_files(state["dir"] / "nodes" / "acme-cert-v1")
    secret = {f["path"]: f["secret"] for f in files}
    assert secret["config.toml"] is False
    assert secret["data/geth/nodekey"] is True and secret["signer.password"] is True
    assert any(p.startswith("data/keystore/") and s for p, s in secret.items())
    assert "data" in dirs and "data/geth" in dirs


def test_inventory_one_group_per_org(state):
    d = state["dir"]
    hosts = [MemberHost(ssh=h, root=str(state["lab"].host_root(h.org)), service_manager="supervised")
             for h in state["lab"].hosts(["acme-cert", "globex"])]
    doc = inventory(network=json.loads((d / "network.json").read_text()), spec=json.loads((d / "spec.json").read_text()),
                    hosts=hosts, state_dir=d, control_dir=Path("/tmp/cp"))
    top = doc["all"]
    assert top["vars"]["testbed_runtime"] == "binary" and top["vars"]["testbed_binary_src"] == BINARY
    assert top["vars"]["testbed_genesis_src"] == str(d / "genesis.json")
    assert sorted(top["children"]) == ["org_acme_cert", "org_globex"]
    globex = top["children"]["org_globex"]["hosts"]["globex"]
    assert globex["ansible_host"] == "198.18.2.10" and globex["testbed_service_manager"] == "supervised"
    assert [n["name"] for n in globex["testbed_nodes"]] == ["globex-v1", "globex-m1"]
    assert "StrictHostKeyChecking=yes" in globex["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/kh" in globex["ansible_ssh_common_args"]
    assert globex["ansible_ssh_private_key_file"] == "/k"
    # secrets travel as file paths, never as values in the inventory
    text = yaml.safe_dump(doc)
    assert (d / "nodes" / "globex-v1" / "signer.password").read_text() not in text


def test_container_runtime_for_besu(state):
    d = state["dir"]
    spec = json.loads((d / "spec.json").read_text())
    spec.update(client="besu", image="hyperledger/besu:24.12.2")
    hosts = [MemberHost(ssh=h, root="/opt/cti-testbed/an", service_manager="systemd") for h in state["lab"].hosts(["acme-cert", "globex"])]
    doc = inventory(network=json.loads((d / "network.json").read_text()), spec=spec, hosts=hosts, state_dir=d,
                    control_dir=Path("/tmp/cp"))
    assert doc["all"]["vars"]["testbed_runtime"] == "container"
    assert doc["all"]["vars"]["testbed_image"] == "hyperledger/besu:24.12.2"


def test_remote_argv_moves_paths_to_the_host(tmp_path):
    host = MemberHost(ssh=SshHost("a", "198.18.1.10", "root", "/k", "/kh"), root="/opt/cti-testbed/n", service_manager="systemd")
    argv = [BINARY, "--datadir", f"{tmp_path}/nodes/a-v1/data", f"--config-file={tmp_path}/nodes/a-v1/config.toml",
            "init", f"{tmp_path}/genesis.json"]
    out = remote_argv(argv, state_dir=tmp_path, binary=BINARY, host=host, runtime="binary")
    assert out == ["/opt/cti-testbed/n/bin/geth", "--datadir", "/opt/cti-testbed/n/nodes/a-v1/data",
                   "--config-file=/opt/cti-testbed/n/nodes/a-v1/config.toml", "init", "/opt/cti-testbed/n/genesis.json"]
    boxed = remote_argv(argv, state_dir=tmp_path, binary=BINARY, host=host, runtime="container", image="img:1",
                        node="a-v1", network="n")
    assert boxed[:3] == ["docker", "run", "--rm"] and "img:1" in boxed
    assert "/opt/cti-testbed/n/nodes/a-v1:/opt/cti-testbed/n/nodes/a-v1" in boxed
    assert boxed[boxed.index("img:1") + 1:] == out[1:]
    # a command that is not the client binary (Besu's init `cp`) only has its paths moved
    assert remote_argv(["cp", f"{tmp_path}/genesis.json", "x"], state_dir=tmp_path, binary=BINARY, host=host,
                       runtime="container") == ["cp", "/opt/cti-testbed/n/genesis.json", "x"]


def test_hosts_file(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump([{"org": "a", "address": "198.18.9.1"}, {"org": "b", "address": "198.18.9.2",
                                    "service_manager": "supervised", "user": "deploy", "root": "/srv/tb"}]))
    hosts = load_hosts_file(path, ["a", "b"], "net")
    assert hosts[0].root == "/opt/cti-testbed/net" and hosts[0].service_manager == "systemd"
    assert hosts[1].ssh.user == "deploy" and hosts[1].root == "/srv/tb"
    with pytest.raises(SpecError, match="spec's order"):
        load_hosts_file(path, ["b", "a"], "net")
    path.write_text(yaml.safe_dump([{"org": "a", "address": "x", "colour": "red"}]))
    with pytest.raises(SpecError, match="unknown: colour"):
        load_hosts_file(path, ["a"], "net")


def test_remote_hosts_cannot_be_partitioned(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump([{"org": "a", "address": "198.18.9.1"}]))
    backend = AnsibleBackend(network="n", state_dir=tmp_path, runner=FakeRunner(), hosts_file=str(path))
    assert backend.lab is None and backend.host_for(0, 3) == "198.18.9.1"
    with pytest.raises(NotSupportedError):
        backend.partition([["a"], ["b"]])


def test_sshd_config_is_key_only_on_its_address(tmp_path):
    text = sshd_config(tmp_path, "198.18.1.10", tmp_path / "authorized_keys")
    assert "ListenAddress 198.18.1.10:22" in text
    assert "PasswordAuthentication no" in text and "PermitRootLogin prohibit-password" in text
    assert f"HostKey {tmp_path / 'ssh_host_ed25519_key'}" in text
    argv = ssh_argv(SshHost("a", "198.18.1.10", "root", "/k", "/kh"), "true")
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv and argv[-2:] == ["root@198.18.1.10", "true"]


def test_lifecycle_runs_the_playbooks(state):
    backend, runner, lab, nodes, d = state["backend"], state["runner"], state["lab"], state["nodes"], state["dir"]
    backend.prepare(["acme-cert", "globex"])
    assert lab.up_calls == [["acme-cert", "globex"]]
    assert runner.runs[0]["playbook"] == "site.yml" and runner.runs[0]["limit"] is None
    assert backend.inventory_file.exists()
    node = nodes[1]
    argv = get_client("geth").init_command(Path(BINARY), state["spec"], node, d / "nodes" / node.name, d / "genesis.json")
    backend.run(node, argv, {}, d / "nodes" / node.name / "node.log", timeout=60)
    init = runner.runs[-1]
    assert init["playbook"] == "node.yml" and init["limit"] == "globex"
    assert init["extravars"]["action"] == "init" and init["extravars"]["node"] == "globex-v1"
    host_root = str(lab.host_root("globex"))
    assert init["extravars"]["node_argv"][0] == f"{host_root}/bin/geth"
    assert init["extravars"]["node_argv"][-1] == f"{host_root}/genesis.json"
    proc = backend.start(node, [BINARY, "--datadir", f"{d}/nodes/{node.name}/data"], {}, d / "x.log", marker="m")
    assert proc.pid == runner.reported_pids[-1] and proc.marker == f"{host_root}/nodes/globex-v1/"
    assert runner.runs[-1]["extravars"]["node_log_dest"] == str(d / "x.log")
    for action, call in (("kill", backend.kill), ("pause", backend.pause), ("resume", backend.resume)):
        call(proc)
        assert runner.runs[-1]["extravars"] == {**runner.runs[-1]["extravars"], "action": action,
                                                "node_pid": runner.reported_pids[-1]}
    backend.partition([["acme-cert"], ["globex"]])
    assert lab.partitioned == [["acme-cert"], ["globex"]]
    backend.teardown()
    assert runner.runs[-1]["playbook"] == "teardown.yml" and runner.runs[-1]["extravars"] == {"purge": False}
    assert lab.down_calls == 1
    assert any(m.startswith("ansible ") for m in state["progress"])


def test_start_after_teardown_brings_the_hosts_back(state):
    backend, runner, lab, nodes, d = state["backend"], state["runner"], state["lab"], state["nodes"], state["dir"]
    backend.prepare(["acme-cert", "globex"])
    backend.teardown()
    fresh = AnsibleBackend(network="an", state_dir=d, runner=runner, lab=lab)
    fresh.control_dir = d / "cp"
    fresh.start(nodes[0], [BINARY], {}, d / "x.log", marker="m")
    assert len(lab.up_calls) == 2 and [r["playbook"] for r in runner.runs[-2:]] == ["site.yml", "node.yml"]


def test_a_failed_play_names_task_and_artifacts(state):
    backend, runner, nodes, d = state["backend"], state["runner"], state["nodes"], state["dir"]
    backend.prepare(["acme-cert", "globex"])
    runner.fail = "start"
    with pytest.raises(BackendError, match="does not answer") as err:
        backend.start(nodes[1], [BINARY], {}, d / "x.log", marker="m")
    assert "/runs/" in str(err.value)


@pytest.mark.skipif(shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}") is None,
                    reason="ansible-core is not installed in this environment")
@pytest.mark.parametrize("playbook", ["site.yml", "node.yml", "teardown.yml"])
def test_playbooks_pass_syntax_check(playbook, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"org_a": {"hosts": {"a": {"ansible_host": "198.18.1.10"}}}}}}))
    exe = shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_HOME": str(tmp_path / "home"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    result = subprocess.run([exe, "--syntax-check", "-i", str(inv), str(PLAYBOOKS / playbook)],
                            capture_output=True, text=True, env=env, cwd=PLAYBOOKS, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
