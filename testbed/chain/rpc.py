"""The harness's JSON-RPC batches: one client, and the same batches over a web3 provider.

`RpcClient` speaks to a node's HTTP endpoint or its IPC socket (`ipc:///path/to/node.ipc`):
the admin and validator-vote namespaces (clique_, istanbul_, miner_, debug_) are served only
there, never on the node's HTTP/WS (docs/security.md). `ProviderBatch` gives the same
`batch` over a web3.py provider, for the Solver, which talks to its node through web3 (and
to py-evm in unit tests). Both send at most BATCH_SIZE calls per request and turn each
answer into its result or an `RpcError` that keeps the node's error code and data (revert
data, for `testbed.cti.errors.as_revert`).
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

import requests

from testbed.errors import ChainError


class RpcError(ChainError):
    """A node answered with a JSON-RPC error (its `code` and `data` kept), or did not answer."""

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.data = code, data


BATCH_SIZE = 200  # calls per JSON-RPC request (geth and GoQuorum take up to 1000 by default)


def _result(source: str, method: str, reply: Any) -> Any:
    """The result of one JSON-RPC answer, or the RpcError it carries (returned, not raised)."""
    if not isinstance(reply, dict):
        return RpcError(f"{source}: {method}: unusable answer ({type(reply).__name__})")
    error = reply.get("error")
    if error is None:
        return reply.get("result")
    if not isinstance(error, dict):
        return RpcError(f"{source}: {method}: {error}")
    return RpcError(f"{source}: {method}: {error.get('message', error)}", code=error.get("code"), data=error.get("data"))


def _batched(calls: list[tuple[str, list[Any]]], exchange, allow_errors: bool) -> list[Any]:
    """`exchange(chunk)` -> one result (or RpcError) per call, for every BATCH_SIZE chunk of `calls`."""
    results: list[Any] = []
    for start in range(0, len(calls), BATCH_SIZE):
        results += exchange(calls[start:start + BATCH_SIZE])
    return _settle(results, allow_errors)


def _settle(results: list[Any], allow_errors: bool) -> list[Any]:
    if not allow_errors:
        failed = next((r for r in results if isinstance(r, RpcError)), None)
        if failed is not None:
            raise failed
    return results


class ProviderBatch:
    """`RpcClient.batch` over a web3.py provider (`w3.provider.make_batch_request`). A provider
    without batches (py-evm's) raises what it raises: the caller falls back to single calls."""

    def __init__(self, w3) -> None:
        self.w3 = w3

    def batch(self, calls: list[tuple[str, list[Any]]], *, allow_errors: bool = False) -> list[Any]:
        return _batched(calls, self._exchange, allow_errors)

    def _exchange(self, chunk: list[tuple[str, list[Any]]]) -> list[Any]:
        replies = self.w3.provider.make_batch_request(chunk)
        if not isinstance(replies, list) or len(replies) != len(chunk):
            raise RpcError(f"web3 provider: unusable JSON-RPC batch answer ({type(replies).__name__})")
        return [_result("web3 provider", method, reply) for (method, _), reply in zip(chunk, replies)]


IPC_SCHEME = "ipc://"
MAX_IPC_ANSWER = 64 * 1024 * 1024  # bytes: far above any admin answer; a runaway stream is cut


def ipc_url(path) -> str:
    return f"{IPC_SCHEME}{path}"


class _IpcSession:
    """One JSON-RPC exchange per request over a Unix socket (geth-family IPC: a JSON value in, a
    JSON value back, newline-terminated)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    def exchange(self, payload: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(json.dumps(payload).encode())
            buffer, decoder = b"", json.JSONDecoder()
            while len(buffer) < MAX_IPC_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                if buffer.rstrip().endswith((b"}", b"]")):
                    try:
                        return decoder.raw_decode(buffer.decode().strip())[0]
                    except ValueError:
                        continue  # a partial value that happens to end in a bracket
            raise ValueError("incomplete answer")


class RpcClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._ipc = _IpcSession(url[len(IPC_SCHEME):], timeout) if url.startswith(IPC_SCHEME) else None
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(self, payload: Any) -> Any:
        if self._ipc is not None:
            try:
                return self._ipc.exchange(payload)
            except OSError as exc:
                raise RpcError(f"{self.url}: no answer ({exc.__class__.__name__})") from None
            except ValueError:
                raise RpcError(f"{self.url}: answer is not JSON") from None
        try:
            response = self._session.post(self.url, json=payload, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            raise RpcError(f"{self.url}: no answer ({exc.__class__.__name__})") from None
        except ValueError:
            raise RpcError(f"{self.url}: answer is not JSON") from None

    def call(self, method: str, *params: Any) -> Any:
        reply = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        return _settle([_result(self.url, method, reply)], allow_errors=False)[0]

    def batch(self, calls: list[tuple[str, list[Any]]], *, allow_errors: bool = False) -> list[Any]:
        """Send calls BATCH_SIZE per request; results come back in the order of `calls`.

        With allow_errors, a failing call yields an RpcError instance in its slot instead of raising.
        """
        return _batched(calls, self._exchange, allow_errors)

    def _exchange(self, chunk: list[tuple[str, list[Any]]]) -> list[Any]:
        ids = [next(self._ids) for _ in chunk]
        replies = self._post([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, chunk)])
        if not isinstance(replies, list):
            raise RpcError(f"{self.url}: batch answer is not a list")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        missing = {"error": {"message": "missing from batch answer"}}
        return [_result(self.url, m, by_id.get(i, missing)) for i, (m, _) in zip(ids, chunk)]
