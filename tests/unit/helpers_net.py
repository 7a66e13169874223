"""Network helpers for unit tests: an address that refuses connections, reserved for as long as it is used."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_url() -> Iterator[str]:
    """http://127.0.0.1:<port> of a socket bound but never listening: a connection is refused at
    once, and no other process can take the port while the test uses it (no bind-then-release race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
