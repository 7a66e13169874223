"""The ansible backend, for real: four lab member hosts (a namespace and an sshd each, on
198.18.0.0/15), ansible-runner deploying GoQuorum (QBFT, the default client) over SSH into them, then the same peering and agreement
checks as on the local backend (conformance.py); crash and restart through the playbooks; clean teardown.

The tests in this module share one network and run in file order.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from testbed.backends.ssh_lab import SSHD
from testbed.clients import get_client
from testbed.monitoring import prometheus
from testbed.network import Network
from testbed.report.data import RunData

from . import conformance
from .conftest import NETWORKS, assert_no_process, node_pids, spec_with

pytestmark = pytest.mark.integration


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the ansible backend's lab hosts need root (network namespaces, sshd)"
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "OpenSSH is not installed (apt-get install -y openssh-server)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        return "ansible-runner is not installed in this environment (pip install -e .)"
    return None


if (reason := _missing()) is not None:
    pytest.skip(reason, allow_module_level=True)



def _namespaces(prefix: str) -> list[str]:
    try:
        return [p.name for p in Path("/run/netns").iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []


@pytest.fixture(scope="module")
def lab(testbed_home):
    spec = spec_with(NETWORKS / "four-orgs-ansible.yaml", name="it-ansible", port_base=30600)
    messages: list[str] = []
    started = time.monotonic()
    network = None
    try:
        network = Network.create(spec, progress=lambda m: (messages.append(m), print(m)), timeout=120)
        yield {"network": network, "messages": messages, "up_seconds": time.monotonic() - started}
    finally:
        if network is not None:
            lab_hosts = network.backend.lab
            pids, sshd_pids, prefix = node_pids(network), lab_hosts.remaining_pids(), lab_hosts.netns.plan.namespace_prefix
            control_dir = network.backend.control_dir
            # `down` is checked here, after every test of the module whatever their order
            try:
                running = sorted(network.running_nodes())
                assert sorted(network.down(purge=True)) == running
            finally:
                lab_hosts.down()  # idempotent: sshd pids and namespaces, also if down() failed
            assert_no_process(pids + sshd_pids)
            assert not _namespaces(prefix), _namespaces(prefix)
            assert not control_dir.exists(), "ssh control sockets left behind"


def test_hosts_are_sshd_namespaces_on_the_benchmarking_range(lab):
    network = lab["network"]
    backend = network.backend
    inventory = yaml.safe_load(backend.inventory_file.read_text())
    groups = inventory["all"]["children"]
    assert sorted(groups) == sorted("org_" + o.name.replace("-", "_") for o in network.spec.organizations)
    for org_index, org in enumerate(network.spec.organizations):
        host = groups["org_" + org.name.replace("-", "_")]["hosts"][org.name]
        assert host["ansible_host"].startswith("198.1")
        assert host["testbed_service_manager"] == "supervised"
        namespace = backend.lab.netns.plan.namespace(org.name)
        # the node process runs inside its organization's namespace, started over SSH by ansible
        proc = network.state.read_pid(network.nodes[org_index].name)
        assert subprocess.run(["ip", "netns", "identify", str(proc.pid)], capture_output=True, text=True).stdout.strip() == namespace
    for node in network.nodes:
        assert node.host.startswith("198.1"), node.host
    assert len(backend.lab.remaining_pids()) == 4


def test_keys_are_laid_out_0600_and_artifacts_kept(lab):
    network = lab["network"]
    backend = network.backend
    adapter = get_client(network.spec.client)
    for node in network.nodes:
        root = backend.lab.host_root(node.org) / "nodes" / node.name
        rendered = adapter.node_files(network.spec, node, network.nodes)
        assert any(f.secret for f in rendered) and any(not f.secret for f in rendered)
        for f in rendered:  # the node key (and geth's signer password) 0600 on the host, the rest 0644
            assert stat.S_IMODE((root / f.path).stat().st_mode) == (0o600 if f.secret else 0o644), (node.name, f.path)
        assert (backend.lab.host_root(node.org) / "bin" / network.binary.name).stat().st_mode & stat.S_IXUSR
    runs = sorted((network.state.runs_dir / "ansible").iterdir())
    assert any("-site-" in r.name for r in runs) and sum("-start-" in r.name for r in runs) == 4
    site = next(r for r in runs if "-site-" in r.name)
    assert (site / "status").read_text().strip() == "successful"
    assert (site / "rc").read_text().strip() == "0"
    assert any((site / "job_events").iterdir())
    assert any("ansible site.yml: Node files" in m for m in lab["messages"]), "ansible events reach the progress"


def test_every_node_has_all_peers_and_the_signers(lab):
    conformance.check_every_node_has_all_peers(lab["network"])


def test_all_nodes_agree_on_every_height(lab):
    result = conformance.check_all_nodes_agree_on_every_height(lab["network"])
    print(f"ansible four-orgs: up in {lab['up_seconds']:.1f}s; {result.summary()}")


def test_pause_and_resume_through_ansible(lab):
    network = lab["network"]
    victim = network.nodes[1]
    proc = network.process(victim.name)
    network.pause_node(victim.name)
    assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
    network.resume_node(victim.name)
    assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED


def test_killed_validator_chain_continues_and_restart_catches_up(lab):
    conformance.check_killed_validator_chain_continues_and_restart_catches_up(lab["network"], grow_timeout=60,
                                                                              ready_timeout=90)


def test_locust_workers_on_the_member_hosts_feed_one_record(lab):
    """Distributed load with its workers started over SSH on two member hosts by locust-workers.yml."""
    network = lab["network"]
    request = {"command": "load", "network": network.name, "profile": "constant:80:6",
               "options": {"batch_size": 10, "per_user_rate": 20.0, "drain_timeout": 20.0, "workers": 2,
                           "worker_hosts": "ansible"}}
    proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"])
    workers = json.loads((run_dir / "workers.json").read_text())
    bridge = network.backend.lab.netns.plan.bridge_address
    assert workers["where"] == "MemberHosts" and workers["master"].startswith(bridge + ":"), workers
    assert len(workers["started_pids"]) == 2
    assert_no_process(workers["started_pids"])
    # one worker on each of the first two hosts; their logs came back from the hosts
    orgs = [o.name for o in network.spec.organizations]
    assert sorted(p.parent.name for p in (run_dir / "workers").glob("*/worker-0.log")) == sorted(orgs[:2])
    data = RunData.load(run_dir)
    statuses = Counter(t["status"] for t in data.txs)
    # correctness, not speed: no more than the profile asks, none of what the nodes accepted lost
    assert 0 < len(data.txs) <= 80 * 6 + 20 and statuses["included"] > 0 and not statuses["dropped"], statuses
    assert {"generator-w0", "generator-w1"} <= {r["process"] for r in data.resources}
    # the nodes' figures come from the hosts (what each node reports, scraped by a Prometheus the
    # run started and stopped), not from pids of this machine
    from_hosts = {r["process"] for r in data.resources if r.get("source") == "prometheus" and r.get("cpu_percent") is not None}
    assert from_hosts >= {n.name for n in network.nodes}, from_hosts
    assert prometheus.read_record(network) is None
    runs = sorted((network.state.runs_dir / "ansible").iterdir())
    assert any("-workers-start-" in r.name for r in runs) and any("-workers-stop-" in r.name for r in runs)
