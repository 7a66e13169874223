"""Waiting for a node to catch up: each organization talks to its own node, so a write made
through one node is readable through another only once that node has the block."""

from __future__ import annotations

import time

from testbed.errors import ChainError
from testbed.poll import poll_until


def wait_for_block(w3, block: int, timeout: float = 30.0, interval: float = 0.2) -> None:
    """Return once the node behind `w3` (a web3.Web3) has block `block`; ChainError after `timeout`."""
    poll_until(lambda: w3.eth.block_number >= block, timeout=timeout, interval=interval,
               error=lambda: ChainError(f"node {w3.provider.endpoint_uri} did not reach block {block} "
                                        f"within {timeout:.0f}s"))


def wait_for_block_on_nodes(net, block: int, *, orgs: set[str] | None = None, timeout: float = 60.0,
                            interval: float = 0.2) -> None:
    """Return once every running node of the network (of `orgs` only, if given) has block `block`:
    a write is then readable through whichever node an organization uses. ChainError after `timeout`
    (one deadline for all the nodes)."""
    from testbed.chain.rpc import RpcClient

    deadline = time.monotonic() + timeout
    for node in net.nodes:
        if (orgs is not None and node.org not in orgs) or not net.process(node.name):
            continue
        with RpcClient(node.rpc_url, timeout=5) as rpc:
            poll_until(lambda: int(rpc.call("eth_blockNumber"), 16) >= block,
                       timeout=deadline - time.monotonic(), interval=interval,
                       error=lambda: ChainError(f"node {node.name} did not reach block {block} within {timeout:.0f}s"))
