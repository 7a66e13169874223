"""The `solver` package as the harness's Solver plugin (entry point `cti_testbed.solvers`,
testbed/solver_plugin.py): process management, sample intelligence and delivery keys."""

from __future__ import annotations

import random

from eth_utils import keccak

from solver import manage
from solver.crypto import delivery_public_key
from solver.intel import DirectoryStore, validate_event
from solver.seed import sample_event, seed_network


class SolverPackage:
    def start(self, net, progress=lambda _: None, *, orgs=None, wait=True, restart=False) -> list[str]:
        return manage.start_solvers(net, progress, orgs=orgs, wait=wait, restart=restart)

    def stop(self, net, progress=lambda _: None, *, orgs=None) -> list[str]:
        return manage.stop_solvers(net, progress, orgs=orgs)

    def status(self, net) -> list:
        return manage.solver_status(net)

    def sample_intel(self, net, org: str, title: str) -> tuple[str, bytes]:
        event = sample_event(random.Random(f"{net.name}:{org}:{title}"), org, 0)
        event.info = title
        path = DirectoryStore(manage.intel_dir(net, org)).put(event)
        return str(event.uuid), keccak(path.read_bytes())

    def store_intel(self, net, org: str, raw: bytes) -> tuple[str, bytes]:
        event = validate_event(raw)
        path = DirectoryStore(manage.intel_dir(net, org)).put(event)
        return str(event.uuid), keccak(path.read_bytes())

    def seed(self, net, org: str, count: int, **options) -> list:
        return seed_network(net, org, count, **options)

    def delivery_public_key(self, private_key: bytes | str) -> bytes:
        return delivery_public_key(private_key)

    def pids(self, net) -> dict[str, int]:
        return {proc.name: proc.pid for org in manage.solver_orgs(net) if (proc := manage.running(net, org))}


PLUGIN = SolverPackage()
