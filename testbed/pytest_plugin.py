"""pytest plugin for QA (registered through the `pytest11` entry point `testbed`).

Fixtures:
    consortium      a running Network from a spec, torn down (and its state removed) after the test.
                    The spec is scenarios/networks/four-orgs.yaml unless the test says otherwise;
                    deploy=True also deploys the CTI contracts (and starts every org's Solver):
                        @pytest.mark.consortium(spec="path/to/net.yaml", name="qa-net", port_base=29400, deploy=True)
    run_scenario    run a scenario file inside a test:
                        result = run_scenario("scenarios/phishing-campaign.yaml")             # own network
                        result = run_scenario("my.yaml", network=consortium)                 # on the fixture's
                    returns testbed.scenario.engine.ScenarioResult (status, assertions, run_dir).

State goes to a temporary TESTBED_HOME per test session (unless TESTBED_HOME is set);
`--testbed-port-base` moves every network of the session (default 29400). Nothing is
imported or started until a fixture is used.

For fixtures of a wider scope (a module's network), `consortium_network(spec)` is the same
set-up as a context manager; the project's own integration tests build theirs on it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from testbed import shipped

DEFAULT_SPEC = shipped.path("scenarios", "networks", "four-orgs.yaml")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("testbed")
    group.addoption("--testbed-port-base", type=int, default=29400,
                    help="ports.base for networks started by the consortium / run_scenario fixtures")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "consortium(spec=None, name=None, port_base=None, deploy=False): network for "
                            "the consortium fixture")


@pytest.fixture(scope="session")
def testbed_state_home(tmp_path_factory):
    """A TESTBED_HOME for this session (an existing TESTBED_HOME is kept)."""
    if os.environ.get("TESTBED_HOME"):
        yield Path(os.environ["TESTBED_HOME"])
        return
    home = tmp_path_factory.mktemp("testbed-home")
    os.environ["TESTBED_HOME"] = str(home)
    try:
        yield home
    finally:
        os.environ.pop("TESTBED_HOME", None)


@contextmanager
def consortium_network(spec, *, source: str | None = None, deploy: bool = False,
                       progress: Callable[[str], None] = lambda _: None) -> Iterator:
    """A running Network from `spec` (a NetworkSpec), with the CTI contracts deployed if `deploy`;
    taken down with its state afterwards, also when deploying or the test fails. The network is
    taken down as saved under its name (a test that changed the membership replaced the object),
    unless the test took it down itself."""
    from testbed.errors import StateError
    from testbed.network import Network

    network = Network.create(spec, source=source, progress=progress)
    try:
        if deploy:
            from testbed.contracts import deploy_to_network

            deploy_to_network(network, progress=progress)
        yield network
    finally:
        if network.state.root.exists():
            try:
                network = Network.load(network.name, network.state.root.parent)
            except StateError:
                pass
            network.down(purge=True)


@pytest.fixture
def consortium(request, testbed_state_home):
    from testbed.scenario.resolve import apply_overrides
    from testbed.spec import load_network_spec

    marker = request.node.get_closest_marker("consortium")
    options = dict(marker.kwargs) if marker else {}
    spec_path = Path(options.pop("spec", None) or DEFAULT_SPEC)
    overrides = {"port_base": options.pop("port_base", None) or request.config.getoption("--testbed-port-base")}
    if options.get("name"):
        overrides["name"] = options.pop("name")
    spec = apply_overrides(load_network_spec(spec_path), overrides)
    with consortium_network(spec, source=str(spec_path), deploy=bool(options.pop("deploy", False))) as network:
        yield network


@pytest.fixture
def run_scenario(request, testbed_state_home):
    """Call with a scenario path; `network=` runs it on an existing network (left running)."""
    from testbed.scenario.engine import run_scenario as run

    port_base = request.config.getoption("--testbed-port-base")

    def runner(path, *, network=None, overrides: dict | None = None, progress=print):
        chosen = {"port_base": port_base, **(overrides or {})}
        return run(Path(path), network=network, progress=progress, network_overrides=None if network else chosen,
                   runs_dir=testbed_state_home / "runs")
    return runner
