"""An HTTP JSON-RPC provider over several nodes of one organization.

A Solver or consumer that talks to one node stops when that node does. With the org's other
nodes listed, a request that cannot reach the current node (connection refused or reset,
timeout) goes to the next one, which then stays current; an answer the node did give (a
JSON-RPC error, a revert) is never retried elsewhere. Transactions are signed client-side,
so any of the org's nodes can relay them; reads stay on nodes the org runs itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import requests
from web3 import HTTPProvider
from eth_typing import URI

log = logging.getLogger(__name__)

UNREACHABLE = (requests.ConnectionError, requests.Timeout)


class FailoverHTTPProvider(HTTPProvider):
    def __init__(self, urls: Sequence[str], **kwargs) -> None:
        if not urls:
            raise ValueError("FailoverHTTPProvider needs at least one URL")
        if len(urls) > 1:
            kwargs.setdefault("exception_retry_configuration", None)  # the next node is the retry
        super().__init__(urls[0], **kwargs)
        self.urls = [URI(u) for u in urls]
        self.current = 0

    def make_request(self, method, params):
        return self._on_some_node(lambda: HTTPProvider.make_request(self, method, params))

    def make_batch_request(self, requests_):
        return self._on_some_node(lambda: HTTPProvider.make_batch_request(self, requests_))

    def _on_some_node(self, call):
        for attempt in range(len(self.urls)):
            try:
                return call()
            except UNREACHABLE as exc:
                if attempt == len(self.urls) - 1:
                    raise
                failed = self.endpoint_uri
                self.current = (self.current + 1) % len(self.urls)
                self.endpoint_uri = self.urls[self.current]
                log.warning("node %s unreachable (%s); using %s", failed, type(exc).__name__, self.endpoint_uri)
        raise AssertionError("unreachable")  # the loop returns or raises
