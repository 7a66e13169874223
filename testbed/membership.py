"""Member onboarding and offboarding on a live network: `testbed join ORG` / `testbed leave ORG`.

Joining: keys, files and peers for the newcomer, its node started on the existing genesis,
its accounts funded by the operator, a validator vote by the current validators, and an
admission vote in the CTI contracts when they are deployed. Leaving reverses it: removal
vote in the contracts, validator vote out, nodes stopped. A departed organization keeps
its node indices (so no other node's ports move) and its state directory for audit.
"""

from __future__ import annotations

from typing import Callable

from testbed import validators
from testbed.chain.rpc import RpcClient
from testbed.chain.inclusion import InclusionTracker
from testbed.chain.txs import send_batch, sign_transfers
from testbed.clients import fee_rules
from testbed.chain.wait import wait_for_block, wait_for_block_on_nodes
from testbed.errors import ChainError, SpecError, StateError
from testbed.keys import KeyPair, NetworkKeys
from testbed.network import WEI_PER_ETH, Network
from testbed.network_plan import check_ports_free, node_names
from testbed.spec.network import NetworkSpec
from testbed.state import write_json_atomic

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def join(net: Network, org: str, *, validators_count: int = 1, members: int = 0, accounts: int = 8,
         solver: bool = True, progress: Progress = _quiet, timeout: float = 120) -> Network:
    if org in [o.name for o in net.spec.organizations]:
        raise StateError(f"organization {org!r} is already part of {net.name!r}" + (" (it left earlier; pick a new name)" if org in net.departed else ""))
    data = net.spec.model_dump()
    data["organizations"].append({"name": org, "validators": validators_count, "members": members,
                                  "solver": solver, "accounts": accounts})
    try:
        spec = NetworkSpec.model_validate(data)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
        raise SpecError(f"cannot add organization {org!r}: {'.'.join(map(str, first['loc'][-2:]))} {first['msg'].removeprefix('Value error, ')}") from None
    if net.running_nodes() != [n.name for n in net.nodes]:
        raise StateError("every node must be running before an organization joins", hint="'testbed start' starts the stopped ones")
    new_names = node_names(spec)[org]
    keys = NetworkKeys(nodes={**net.keys.nodes, **{n: KeyPair.generate() for n in new_names}},
                       accounts={**net.keys.accounts, org: [KeyPair.generate() for _ in range(accounts)]},
                       operator=net.keys.operator)
    # a Network object over the enlarged spec: same state dir, existing nodes keep their plans and ports
    write_json_atomic(net.state.spec_file, spec.model_dump(mode="json"))
    try:
        grown = Network(spec, net.state, keys)
        newcomers = [n for n in grown.nodes if n.org == org]
        check_ports_free(newcomers, "the network spec")
    except BaseException:
        write_json_atomic(net.state.spec_file, net.spec.model_dump(mode="json"))
        raise
    progress(f"{org}: {len(newcomers)} new nodes ({', '.join(n.name for n in newcomers)})")
    keys.save(net.state.keys_dir)
    grown.backend.prepare([org])
    for node in grown.nodes:
        grown.render_node_files(node, peers_only=node.org != org)  # existing nodes learn the new peers for their next start
    grown.write_network_record()
    for node in newcomers:
        grown.init_node(node)
        grown.start_node(node.name)
    progress(f"{org}: nodes started; waiting until every node has {len(grown.nodes) - 1} peers and agrees")
    grown.wait_ready(progress=progress, new_blocks=1, timeout=timeout)
    # the operator holds one genesis allocation; each newcomer account gets a hundredth of it
    fund(grown, [p.address for p in keys.accounts[org]], spec.account_balance_eth * WEI_PER_ETH // 100, progress)
    for node in newcomers:
        if node.is_validator:
            validators.change(grown, node.name, add=True, timeout=timeout, progress=progress)
    if grown.state.deployment_file.is_file():
        admit_in_contracts(grown, org, progress)
    return grown


def fund(net: Network, addresses: list[str], amount_wei: int, progress: Progress = _quiet, timeout: float = 60) -> None:
    """The consortium operator sends `amount_wei` to each address (client-side signed)."""
    node = net.nodes[0]
    with RpcClient(node.rpc_url, timeout=10) as rpc:
        start = int(rpc.call("eth_getTransactionCount", net.keys.operator.address, "pending"), 16)
        txs, fees = [], fee_rules(net.spec)
        for i, address in enumerate(addresses):
            txs += sign_transfers(net.keys.operator.private_key, chain_id=net.spec.chain_id, start_nonce=start + i,
                                  count=1, to=address, org="operator", node=node.name, value=amount_wei, fees=fees)
        tracker = InclusionTracker.from_head(rpc)
        send_batch(rpc, txs)
        records = [t.record for t in txs]
        rejected = [r for r in records if r.status == "rejected"]
        if rejected:
            raise ChainError(f"funding transfer rejected: {rejected[0].error}")
        for record in records:
            tracker.submitted(record)
        if not tracker.wait_all(rpc, timeout):
            raise ChainError(f"funding transfers not included after {timeout:.0f}s")
    progress(f"funded {len(addresses)} accounts")


def _member_clients(net: Network, exclude: str | None = None):
    from testbed.contracts import deployment_of
    from testbed.cti.client import CtiClient
    from testbed.cti.deploy import connect

    deployment = deployment_of(net)
    clients = {}
    for org in net.organizations:
        if org == exclude:
            continue
        node = net.first_node(org)
        clients[org] = CtiClient(connect(node.rpc_url), deployment, net.keys.of(org).steps.private_key, timeout=60)
    return clients


def _vote_through(net: Network, subject: str, clients: dict, proposed, progress: Progress) -> int:
    """Members vote yes one after another until the proposal is decided; returns its id once every
    voter's node and the subject organization's nodes have the deciding block (a newcomer's next
    step goes through its own node, which may still be a block behind)."""
    proposal_id, block = proposed.result, proposed.block
    for org, client in list(clients.items())[1:]:
        wait_for_block(client.w3, block)
        if client.proposal(proposal_id)["status"] != 1:  # no longer Open: decided
            break
        block = client.vote(proposal_id, True).block
        progress(f"{org} voted yes on proposal {proposal_id}")
    for client in clients.values():
        wait_for_block(client.w3, block, timeout=60)
    wait_for_block_on_nodes(net, block, orgs={subject})
    return proposal_id


def admit_in_contracts(net: Network, org: str, progress: Progress = _quiet) -> None:
    from testbed.cti.model import Role

    clients = _member_clients(net, exclude=org)
    proposer = next(iter(clients.values()))
    accounts = [p.address for p in net.keys.accounts[org]]
    proposal = _vote_through(net, org, clients, proposer.propose_admission(org, accounts, [int(Role.ALL)] * len(accounts)), progress)
    org_id, _ = proposer.org_of(accounts[0])
    if not org_id:
        raise ChainError(f"admission of {org!r} did not pass (proposal {proposal})")
    progress(f"{org} admitted to the CTI membership as org #{org_id}")


def leave(net: Network, org: str, *, progress: Progress = _quiet, timeout: float = 120) -> Network:
    if org not in net.organizations:
        raise StateError(f"{org!r} is not a member organization of {net.name!r}; members: {', '.join(net.organizations)}")
    if len(net.organizations) == 1:
        raise StateError("the last organization cannot leave; use 'testbed down'")
    leaving = [n for n in net.nodes if n.org == org]
    if net.state.deployment_file.is_file():
        clients = _member_clients(net)
        target = clients[org].org_of()[0]
        others = {o: c for o, c in clients.items() if o != org}
        proposer = next(iter(others.values()))
        proposal = _vote_through(net, org, others, proposer.propose_removal(target), progress)
        progress(f"{org} removed from the CTI membership (proposal {proposal})")
    for node in leaving:
        current = validators.view(net)
        if node.address.lower() in current.validators:
            validators.change(net, node.name, add=False, timeout=timeout, progress=progress)
    for node in leaving:
        if net.process(node.name):
            net.stop_node(node.name)
    departed = [*net.departed, org]
    net.write_network_record(departed=departed)
    remaining = Network(net.spec, net.state, net.keys)
    for node in remaining.nodes:
        remaining.render_node_files(node, peers_only=True)
    progress(f"{org} left; its nodes are stopped and its state kept in {net.state.root}")
    return remaining
