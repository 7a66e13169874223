"""A small batched JSON-RPC client for sampling many nodes quickly.

web3.py stays the way to build, sign and send transactions; sampling every node several
times a second is one HTTP request per node with a JSON-RPC batch, which is what this class
does and no more. The same client speaks to a node's IPC socket (`ipc:///path/to/node.ipc`):
the admin and validator-vote namespaces (clique_, istanbul_, miner_, debug_) are served only
there, never on the node's HTTP/WS (docs/security.md).
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

import requests

from testbed.errors import ChainError


class RpcError(ChainError):
    """A node answered with a JSON-RPC error, or did not answer."""


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
        if "error" in reply:
            raise RpcError(f"{self.url}: {method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    def batch(self, calls: list[tuple[str, list[Any]]], *, allow_errors: bool = False) -> list[Any]:
        """Send calls in one request; results come back in the order of `calls`.

        With allow_errors, a failing call yields an RpcError instance in its slot instead of raising.
        """
        if not calls:
            return []
        first = next(self._ids)
        payload = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        for _ in range(len(calls) - 1):
            next(self._ids)
        replies = self._post(payload)
        if not isinstance(replies, list):
            raise RpcError(f"{self.url}: batch answer is not a list")
        by_id = {r.get("id"): r for r in replies}
        results: list[Any] = []
        for i, (method, _) in enumerate(calls):
            reply = by_id.get(first + i, {"error": {"message": "missing from batch answer"}})
            if "error" in reply:
                err = RpcError(f"{self.url}: {method}: {reply['error'].get('message', reply['error'])}")
                if not allow_errors:
                    raise err
                results.append(err)
            else:
                results.append(reply.get("result"))
        return results
