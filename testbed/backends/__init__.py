"""Backends: where nodes run (local processes, network namespaces, docker, ansible hosts)."""

from __future__ import annotations

from testbed.backends.base import Backend, NodeProcess
from testbed.errors import SpecError

__all__ = ["Backend", "NodeProcess", "get_backend"]


def _registry() -> dict[str, type]:
    from testbed.backends.local import LocalBackend
    from testbed.backends.netns import NetnsBackend

    return {"local": LocalBackend, "netns": NetnsBackend}


def get_backend(name: str, *, network: str, state_dir) -> Backend:
    """The backend for one network; `state_dir` is where it may keep its own records."""
    registry = _registry()
    try:
        factory = registry[name]
    except KeyError:
        raise SpecError(f"backend {name!r} is not available in this version; available backends: {', '.join(sorted(registry))}") from None
    return factory(network=network, state_dir=state_dir)
