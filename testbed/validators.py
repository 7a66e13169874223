"""Validator-set changes through the client's real voting RPC (clique_*, istanbul_*, qbft_*/ibft_*),
called on each node's admin endpoint (its IPC socket: these namespaces are never on HTTP/WS).

Every current validator is asked to vote; the change is done when every running node
reports the new set. Reading the sets is a pure comparison over per-node answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from testbed.chain.rpc import RpcClient, RpcError
from testbed.errors import ChainError, StateError
from testbed.network import Network
from testbed.poll import poll_until


@dataclass(frozen=True)
class ValidatorView:
    per_node: dict[str, tuple[str, ...] | None]  # None: the node did not answer

    @property
    def agreed(self) -> bool:
        answers = [v for v in self.per_node.values() if v is not None]
        return bool(answers) and len(answers) == len(self.per_node) and len(set(answers)) == 1

    @property
    def validators(self) -> tuple[str, ...]:
        """The set most nodes report (ties broken by first seen)."""
        answers = [v for v in self.per_node.values() if v is not None]
        return max(answers, key=answers.count) if answers else ()


def view(net: Network, only: list[str] | None = None) -> ValidatorView:
    names = only or net.running_nodes()
    result: dict[str, tuple[str, ...] | None] = {}
    for name in names:
        with RpcClient(net.admin_url(name)) as rpc:
            try:
                result[name] = tuple(sorted(a.lower() for a in rpc.call(net.validator_rpc_of(name).list_method, "latest")))
            except RpcError:
                result[name] = None
    return ValidatorView(result)


def change(net: Network, node_name: str, *, add: bool, timeout: float = 90, progress: Callable[[str], None] = lambda _: None) -> ValidatorView:
    """Vote `node_name` into (add) or out of the validator set and wait until every running node agrees."""
    target = net.node(node_name)
    address = target.address.lower()
    before = view(net)
    if not before.agreed:
        raise StateError("nodes do not agree on the current validator set; fix that first", hint="see 'testbed validators'")
    current = set(before.validators)
    if add and address in current:
        raise StateError(f"{node_name} ({target.address}) is already a validator")
    if not add and address not in current:
        raise StateError(f"{node_name} ({target.address}) is not a validator")
    if not add and len(current) == 1:
        raise StateError("cannot remove the last validator")
    if add and not net.process(node_name):
        raise StateError(f"{node_name} is not running; start it before voting it in")
    rpc_names = net.validator_rpc_of(node_name)
    voters = [n for n in net.nodes if n.address.lower() in current and net.process(n.name)]
    progress(f"{len(voters)} validators vote to {'add' if add else 'remove'} {node_name} ({target.address})")
    if add and rpc_names.start_sealing_method:
        # start sealing first: the new signer's first in-turn slot comes soon after the vote passes
        net.admin_call(target.name, rpc_names.start_sealing_method)
    for voter in voters:  # each in its own client's voting method (a mixed network has two)
        net.admin_call(voter.name, net.validator_rpc_of(voter.name).propose_method, target.address, add)

    def settled() -> ValidatorView | None:
        now = view(net)
        return now if now.agreed and (address in now.validators) == add else None

    def not_agreed() -> ChainError:
        now = view(net)
        return ChainError(f"validator vote for {node_name} not agreed after {timeout:.0f}s: "
                          + ", ".join(f"{n}: {len(v) if v else '?'} validators" for n, v in now.per_node.items()))

    now = poll_until(settled, timeout=timeout, interval=0.5, error=not_agreed)
    for voter in voters:
        if (discard := net.validator_rpc_of(voter.name).discard_method):
            net.admin_call(voter.name, discard, target.address)
    if not add and rpc_names.stop_sealing_method and net.process(node_name):
        net.admin_call(target.name, rpc_names.stop_sealing_method)
    progress(f"agreed by {len(now.per_node)} nodes: {len(now.validators)} validators")
    return now


def block_signers(net: Network, first: int, last: int, node_name: str | None = None) -> dict[int, str]:
    """Who sealed each block in [first, last]: the client's signer RPC (Clique: clique_getSigner), or
    the block's `miner` (QBFT puts the proposer there)."""
    node = net.node(node_name) if node_name else net.nodes[0]
    method = net.validator_rpc_of(node.name).signer_method
    with RpcClient(node.rpc_url) as rpc, RpcClient(net.admin_url(node.name)) as admin:
        blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(first, last + 1)])
        if method is None:
            signers = [b["miner"] for b in blocks]
        else:
            signers = admin.batch([(method, [b["hash"]]) for b in blocks], allow_errors=True)
    signers = [s.get("Author") if isinstance(s, dict) else s for s in signers]  # GoQuorum: {"Author": ...}
    return {int(b["number"], 16): s.lower() for b, s in zip(blocks, signers) if isinstance(s, str)}
