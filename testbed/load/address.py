"""HOST:PORT of a Locust master, as the CLI and a worker process read it (pure: no Locust import)."""

from __future__ import annotations

from testbed.errors import StateError


def parse_master(text: str, what: str = "--master") -> tuple[str, int]:
    """('10.0.0.5', 5557) from '10.0.0.5:5557'; StateError naming `what` and the fix otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StateError(f"{what} {text!r} is not HOST:PORT of a Locust master", hint="e.g. 10.0.0.5:5557")
    return host, int(port)
