"""Pydantic models for network and scenario files, and the YAML loader that maps errors to lines."""

from testbed.spec.loader import load_model
from testbed.spec.network import NetworkSpec, Organization, engines_by_client

__all__ = ["engines_by_client", "NetworkSpec", "Organization", "load_network_spec", "load_model"]


def load_network_spec(path) -> NetworkSpec:
    return load_model(path, NetworkSpec)
