"""Integration fixtures: real geth nodes on 127.0.0.1, state in a temporary TESTBED_HOME.

Every network a test creates is torn down by pid in a finalizer, also when the test fails.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from testbed import toolchain
from testbed.network import Network
from testbed.poll import poll_until
from testbed.pytest_plugin import consortium_network
from testbed.spec import load_network_spec

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = ROOT / "scenarios" / "networks"

# the shared backend checks assert like a test module does (values shown on failure)
pytest.register_assert_rewrite("tests.integration.conformance")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """CI shuffles the order of test modules (pytest-random-order, tox.ini); inside an integration
    module the tests keep file order: each module drives one network per client (a module-scoped
    fixture, parametrized by client), which a shuffle of its tests would start again at every
    switch of client. Each test still leaves the network as it found it (teardowns check `down`)."""
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.random_order(disabled=True))


@pytest.fixture(scope="session", autouse=True)
def node_binaries():
    """geth (Clique) and GoQuorum (QBFT, the default network): built once into the toolchain cache."""
    return {name: toolchain.ensure(name, log=print) for name in ("geth", "goquorum")}


# The live clients and engines every conformance check runs on: the default network (GoQuorum QBFT)
# and the second client (geth Clique).
CLIENT_SPECS = {"goquorum-qbft": "four-orgs.yaml", "geth-clique": "four-orgs-clique.yaml"}


@pytest.fixture(scope="session")
def testbed_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("testbed-home")
    old = os.environ.get("TESTBED_HOME")
    os.environ["TESTBED_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TESTBED_HOME", None)
    else:
        os.environ["TESTBED_HOME"] = old


def spec_with(path: Path, **changes):
    """A shipped spec with some fields replaced (name, ports) so test networks never collide."""
    spec = load_network_spec(path)
    data = spec.model_dump()
    for key, value in changes.items():
        if key == "port_base":
            data["ports"]["base"] = value
        else:
            data[key] = value
    return type(spec).model_validate(data)


def node_pids(network: Network) -> list[int]:
    """Every node's pid and its children's (geth's clef)."""
    pids = [p.pid for p in (network.state.read_pid(n.name) for n in network.nodes) if p]
    for pid in list(pids):
        try:
            pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            pass
    return pids


def assert_no_process(pids: list[int], grace: float = 10.0) -> None:
    """None of `pids` runs any more (a node's clef ends on its parent's death signal: allow `grace` s)."""
    def alive() -> list[int]:
        found = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(pid)
            except psutil.NoSuchProcess:
                pass
        return found

    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(), f"processes still alive: {alive()}"


@pytest.fixture(scope="module", params=list(CLIENT_SPECS.values()), ids=list(CLIENT_SPECS))
def four_orgs(testbed_home, request):
    """The four-org network once per live client/engine (module scope: one at a time)."""
    spec = spec_with(NETWORKS / request.param, name="it-four-orgs", port_base=24000)
    with consortium_network(spec, progress=print) as network:
        started = node_pids(network)
        yield network
        # `down` itself is checked here, after every test of the module whatever their order: it names
        # every running node as stopped and leaves none of their processes (nor geth's clef)
        running = sorted(network.running_nodes())
        assert sorted(network.down(purge=True)) == running
    assert_no_process(started)


@contextmanager
def deployed_four_orgs(name: str, port_base: int) -> Iterator[Network]:
    """four-orgs under `name` and `port_base`, with the CTI contracts deployed; taken down with
    its state afterwards (as saved: tests that change the membership replace the object), also
    when deploying or a test fails (the plugin's consortium_network)."""
    spec = spec_with(NETWORKS / "four-orgs.yaml", name=name, port_base=port_base)
    with consortium_network(spec, deploy=True, progress=print) as network:  # taken down as saved
        yield network


def observe(sample, seconds: float, interval: float = 1.0) -> list:
    """Call `sample` every `interval` for `seconds` and return every value: the window a test
    watches for something that must not happen (a peer that must not connect, a chain that must
    not grow), which no poll can wait for."""
    values = [sample()]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(interval)
        values.append(sample())
    return values


def wait_until_steady(read, steady_s: float, timeout: float, interval: float = 1.0):
    """Poll `read` until its value has not changed for `steady_s`; return that value, or None if it
    still changed after `timeout`."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= steady_s:
            return value
    return None


def wait_for(predicate, timeout: float, interval: float = 0.5):
    """Poll `predicate` until it returns something truthy or `timeout` passes; return its last value."""
    return poll_until(predicate, timeout=timeout, interval=interval)
