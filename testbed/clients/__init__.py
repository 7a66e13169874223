"""Node-client adapters, all of the same shape (see base.ClientAdapter), chosen by name."""

from __future__ import annotations

from testbed.chain.txs import FeeRules
from testbed.clients.base import ClientAdapter
from testbed.errors import SpecError


def _registry() -> dict[str, ClientAdapter]:
    from testbed.clients.besu import BesuClient
    from testbed.clients.geth import GethClient
    from testbed.clients.goquorum import GoQuorumClient

    adapters: list[ClientAdapter] = [GethClient(), GoQuorumClient(), BesuClient()]
    return {a.name: a for a in adapters}


def fee_rules(spec) -> FeeRules:
    """How transactions pay on a network of this spec (its genesis decides: in a mixed network,
    the pre-London genesis every client then shares)."""
    rules = [get_client(name).fee_rules for name in spec.clients]
    return next((r for r in rules if not r.london), rules[0])


def all_clients() -> list[ClientAdapter]:
    return list(_registry().values())


def get_client(name: str) -> ClientAdapter:
    registry = _registry()
    try:
        return registry[name]
    except KeyError:
        raise SpecError(f"unknown client {name!r}; valid clients: {', '.join(sorted(registry))}") from None
