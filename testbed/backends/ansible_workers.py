"""Locust workers on an ansible network's member hosts, through infra/ansible/locust-workers.yml.

Used by `testbed workers start|stop` (an operator driving a master elsewhere) and by the load
process itself (testbed.load.distributed.MemberHosts). The load process is monkey-patched by
gevent, under which ansible-runner's pexpect spawn hangs, so it runs this module as a child
process: `python -m testbed.backends.ansible_workers '<json request>'`, the answer being the
last stdout line as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.errors import StateError


def spread(orgs: list[str], count: int) -> dict[str, int]:
    """`count` workers over the organizations' hosts, round-robin from the first."""
    counts = {org: count // len(orgs) + (1 if i < count % len(orgs) else 0) for i, org in enumerate(orgs)}
    return {org: n for org, n in counts.items() if n}


def _ansible(net):
    if net.spec.backend != "ansible":
        raise StateError(f"network {net.name!r} runs on the {net.spec.backend} backend: Locust workers go to member "
                         "hosts of an ansible network only", hint="use local workers (worker_hosts: local)")
    return net.backend


def master_address(net) -> str | None:
    """The address the network's member hosts reach this machine at (lab hosts), or None (an operator's hosts)."""
    return _ansible(net).worker_master_address()


def start(net, master: str, count: int, *, python: str = "", package: str = "") -> list[int]:
    """`count` workers spread over the member hosts; their pids. Python: this interpreter on lab hosts
    (same machine), else the hosts' python3 (or the venv `package` is installed into)."""
    backend = _ansible(net)
    python = python or (sys.executable if backend.worker_master_address() else "python3")
    return backend.start_load_workers(master, spread(net.organizations, count), python=python, package=package)


def stop(net, log_dest: Path) -> None:
    _ansible(net).stop_load_workers(log_dest)
