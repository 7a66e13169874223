"""Sample nodes over batched JSON-RPC into consensus.NodeSnapshot records."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from testbed.chain.rpc import RpcClient, RpcError
from testbed.consensus import NodeSnapshot

MAX_BATCH = 500


def _to_int(value: str | None) -> int | None:
    return int(value, 16) if isinstance(value, str) else None


ValidatorMethod = str | dict[str, str] | Callable[[str], str] | None  # one method for all nodes, or per node


def method_of(validator_method, node: str) -> str | None:
    """The validator-list method node `node` answers: one for all, a map, or a function of the node."""
    if callable(validator_method):
        return validator_method(node)
    if isinstance(validator_method, dict):
        return validator_method.get(node)
    return validator_method


def validator_set(admin_url: str | None, validator_method: str | None, timeout: float = 5.0) -> tuple[str, ...] | None:
    """The validator set a node reports, asked on its admin endpoint (the vote namespaces are
    never on HTTP/WS); None when there is no method or endpoint, or the node does not answer."""
    if not admin_url or not validator_method:
        return None
    with RpcClient(admin_url, timeout=timeout) as rpc:
        try:
            answer = rpc.call(validator_method, "latest")
        except RpcError:
            return None
    return tuple(answer) if isinstance(answer, list) else None


def snapshot_node(name: str, url: str, validator_method: str | None, heights: list[int] | None = None,
                  timeout: float = 5.0, admin_url: str | None = None) -> NodeSnapshot:
    """Head, peers, validators (asked on `admin_url`) and, for `heights`, the block hash at each height."""
    with RpcClient(url, timeout=timeout) as rpc:
        try:
            calls: list[tuple[str, list]] = [("eth_getBlockByNumber", ["latest", False]), ("net_peerCount", [])]
            results = rpc.batch(calls, allow_errors=True)
            head = results[0]
            if isinstance(head, RpcError) or head is None:
                return NodeSnapshot(node=name, reachable=False, error=str(head))
            peers = results[1] if not isinstance(results[1], RpcError) else None
            validators = validator_set(admin_url, validator_method, timeout)
            hashes = {int(head["number"], 16): head["hash"]}
            wanted = [h for h in (heights or []) if h <= int(head["number"], 16)]
            for start in range(0, len(wanted), MAX_BATCH):
                chunk = wanted[start:start + MAX_BATCH]
                blocks = rpc.batch([("eth_getBlockByNumber", [hex(h), False]) for h in chunk], allow_errors=True)
                for h, block in zip(chunk, blocks):
                    if isinstance(block, dict):
                        hashes[h] = block["hash"]
            return NodeSnapshot(
                node=name, reachable=True,
                head_number=int(head["number"], 16), head_hash=head["hash"],
                head_timestamp=int(head["timestamp"], 16), peers=_to_int(peers),
                validators=validators, hashes=hashes,
            )
        except RpcError as exc:
            return NodeSnapshot(node=name, reachable=False, error=str(exc))


def snapshot_all(endpoints: dict[str, str], validator_method: ValidatorMethod, heights: list[int] | None = None,
                 timeout: float = 5.0, admin: dict[str, str] | None = None) -> list[NodeSnapshot]:
    """Snapshot every node concurrently; order follows `endpoints`. `admin`: each node's admin
    endpoint, where its validator set is read (without it, no validator sets)."""
    if not endpoints:
        return []
    admin = admin or {}
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        futures = [pool.submit(snapshot_node, n, u, method_of(validator_method, n), heights, timeout, admin.get(n))
                   for n, u in endpoints.items()]
        return [f.result() for f in futures]


def heads(endpoints: dict[str, str], timeout: float = 3.0) -> dict[str, int | None]:
    """Head block number per node (None when unreachable)."""
    return {s.node: s.head_number for s in snapshot_all(endpoints, None, None, timeout)}
