"""Deploy the CTI contracts to a running network and keep the deployment record in its state dir.

The contracts and their typed wrappers live in testbed.cti; this module only connects them
to a Network: which node to send through, which accounts are founding members, where the
record is written, and refusing to redeploy silently.
"""

from __future__ import annotations

from typing import Callable

from testbed.consensus import common_height
from testbed.errors import StateError
from testbed.network import Network
from testbed.solver_plugin import solver_plugin


def founding_members(net: Network) -> dict[str, list[str]]:
    """Every organization of the spec is a founding member with all its funded accounts."""
    return {org: [p.address for p in pairs] for org, pairs in net.keys.accounts.items()}


def deployment_of(net: Network):
    """The network's deployment record; a clear error if there is none."""
    from testbed.cti.deploy import Deployment

    path = net.state.deployment_file
    if not path.is_file():
        raise StateError(f"no contracts deployed on {net.name!r}", hint=f"run 'testbed deploy --network {net.name}'")
    return Deployment.load(path)


def deploy_to_network(net: Network, *, force: bool = False, progress: Callable[[str], None] = lambda _: None):
    from testbed.cti.deploy import check_deployed, connect, deploy

    path = net.state.deployment_file
    node = next(n for n in net.nodes if net.process(n.name))  # any running node; the operator is consortium-wide
    if path.is_file() and not force:
        existing = deployment_of(net)
        try:
            check_deployed(connect(node.rpc_url), existing)
        except StateError:
            raise StateError(f"{path} records a deployment that is not on this chain",
                             hint="run 'testbed deploy --force' to deploy afresh") from None
        raise StateError(f"contracts are already deployed on {net.name!r} (Membership at {existing.address('Membership')})",
                         hint="use --force to deploy a new set")
    progress(f"deploying the CTI contracts through {node.name} as the consortium operator")
    deployment = deploy(node.rpc_url, net.spec.chain_id, net.keys.operator.private_key, founding_members(net), log=progress)
    deployment.save(path)
    progress(f"deployment record written to {path}")
    plugin = solver_plugin()
    if plugin is not None:  # every org whose spec says `solver: true` (a redeploy: restarted on the new contracts)
        plugin.start(net, progress, restart=force)
    return deployment


def head_block(net: Network) -> int:
    """The highest block every running node holds (the common head)."""
    height = common_height(net.snapshots(only=net.running_nodes()))
    if height is None:
        raise StateError(f"no node of {net.name!r} answers", hint=f"'testbed status {net.name}' shows the nodes")
    return height


def pedometer_of(net: Network, *, since: int = 0, block: int | None = None) -> dict:
    """Every organization's Activity counters at the common head (and their change since block
    `since`), checked against the Step events, and the timeline of the tasks since then."""
    from testbed.cti.deploy import connect
    from testbed.cti.pedometer import read_pedometer

    block = head_block(net) if block is None else block
    node = next(n for n in net.nodes if net.process(n.name))
    return read_pedometer(connect(node.rpc_url, timeout=60), deployment_of(net), block=block, since=since,
                          names=net.keys.account_labels())


def chain_mark(net: Network) -> int:
    """Where a run starts counting: the common head now (0 when no node answers)."""
    try:
        return head_block(net)
    except StateError:
        return 0


def record_pedometer(net: Network, run, *, since: int) -> None:
    """activity.json of a run on a network with the CTI contracts: the pedometer at the common
    head, counted from block `since`. A reading that fails is written as its error, which the
    report shows, rather than failing the run it describes."""
    if not net.state.deployment_file.is_file():
        return
    try:
        reading = pedometer_of(net, since=since)
    except Exception as exc:  # noqa: BLE001 - any failure to read is shown in the report
        reading = {"error": f"the pedometer could not be read: {exc.__class__.__name__}: {exc}"}
    run.write_json("activity.json", reading)
