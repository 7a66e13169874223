"""Waiting for a node to catch up: each organization talks to its own node, so a write made
through one node is readable through another only once that node has the block."""

from __future__ import annotations

import time

from testbed.errors import ChainError


def wait_for_block(w3, block: int, timeout: float = 30.0, interval: float = 0.2) -> None:
    """Return once the node behind `w3` (a web3.Web3) has block `block`; ChainError after `timeout`."""
    deadline = time.monotonic() + timeout
    while w3.eth.block_number < block:
        if time.monotonic() > deadline:
            raise ChainError(f"node {w3.provider.endpoint_uri} did not reach block {block} within {timeout:.0f}s")
        time.sleep(interval)
