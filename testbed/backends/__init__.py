"""Backends: where nodes run (local processes, network namespaces, docker, ansible hosts)."""

from __future__ import annotations

from importlib import import_module

from testbed.backends.base import Backend, NodeProcess
from testbed.errors import SpecError

__all__ = ["Backend", "NodeProcess", "get_backend", "BACKENDS"]

# name -> "module:Class"; a backend's module is imported only when a network uses it, so one
# backend's optional dependencies (docker SDK, ansible-runner) never break the others.
BACKENDS: dict[str, str] = {
    "local": "testbed.backends.local:LocalBackend",
    "netns": "testbed.backends.netns:NetnsBackend",
    "docker": "testbed.backends.docker:DockerBackend",
    "ansible": "testbed.backends.ansible:AnsibleBackend",
}


def get_backend(name: str, *, network: str, state_dir) -> Backend:
    """The backend for one network; `state_dir` is where it may keep its own records."""
    target = BACKENDS.get(name)
    if target is None:
        raise SpecError(f"backend {name!r} is not available; available backends: {', '.join(sorted(BACKENDS))}")
    module, _, cls = target.partition(":")
    try:
        factory = getattr(import_module(module), cls)
    except ImportError as exc:
        raise SpecError(f"backend {name!r} cannot be loaded here: {exc}") from None
    return factory(network=network, state_dir=state_dir)
