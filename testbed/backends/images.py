"""Pinned container images of the node clients: one table, used by the docker backend and by
the ansible backend's container runtime. A spec's `image` field overrides the pin.

Tags are exact releases (never `latest`); an operator who wants byte-for-byte pins appends the
digest (`name:tag@sha256:...`) in the spec's `image` field. The digests are not recorded here
because no registry can be reached from where this table is maintained to verify them.
"""

from __future__ import annotations

from testbed.errors import SpecError

PINNED_IMAGES: dict[str, str] = {
    # go-ethereum 1.13.15: the last release that seals Clique (same version as the toolchain's geth)
    "geth": "ethereum/client-go:v1.13.15",
    # GoQuorum's last release (v24.4.1, archived upstream), same version as the toolchain recipe
    "goquorum": "quorumengineering/quorum:24.4.1",
    # Hyperledger Besu with QBFT / IBFT 2.0 (Clique is deprecated in Besu)
    "besu": "hyperledger/besu:24.12.2",
}

# The Prometheus server of an exported compose project (testbed export compose)
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.3"

# What the image runs when given only arguments (the client's own binary), for each client.
IMAGE_ENTRYPOINT: dict[str, str] = {"geth": "geth", "goquorum": "geth", "besu": "besu"}


def image_for(client: str, override: str | None = None) -> str:
    if override:
        return override
    try:
        return PINNED_IMAGES[client]
    except KeyError:
        raise SpecError(f"no pinned image for client {client!r}; pinned: {', '.join(sorted(PINNED_IMAGES))}") from None
