"""Deploy the CTI contracts to a running network and keep the deployment record in its state dir.

The contracts and their typed wrappers live in testbed.cti; this module only connects them
to a Network: which node to send through, which accounts are founding members, where the
record is written, and refusing to redeploy silently.
"""

from __future__ import annotations

from typing import Callable

from testbed.errors import StateError
from testbed.network import Network


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
    from solver.manage import start_solvers
    start_solvers(net, progress, restart=force)  # solver hook: every org whose spec says `solver: true`
    return deployment
