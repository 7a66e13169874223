"""Consensus engines: what each family promises, in one place.

Nothing outside this package asks "is this Clique?": it asks the engine. One record per engine
name, chosen from the registry; an unknown name fails listing the known ones.

- Clique (geth): no instant finality. Two signers may seal the same height at once and the
  heavier branch wins later, so a receipt read at the tip can come from a block that is then
  replaced, where the same transaction can sit in another order (and create another id).
  Trust a receipt only `confirmations` blocks deep. Signers can deadlock on equal-weight
  branches (go-ethereum #18402): the watchdog may rewind one branch (`repairs_forks`).
- QBFT / IBFT / IBFT 2.0 (GoQuorum, Besu): a block is final once committed (reorg depth 0).
  Without 2f+1 validators the chain halts, which is expected; there is nothing to repair.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.errors import SpecError


@dataclass(frozen=True)
class Engine:
    name: str
    family: str  # "clique" | "bft"
    confirmations: int  # blocks on top of a receipt's block before what it created is trusted
    max_reorg_depth: int  # deepest reorg that is normal for the engine (agreement checks)
    repairs_forks: bool  # a stall with competing branches is repaired by a rewind (the watchdog)

    @property
    def final(self) -> bool:
        return self.confirmations == 0


_BFT = dict(family="bft", confirmations=0, max_reorg_depth=0, repairs_forks=False)
ENGINES: dict[str, Engine] = {
    "clique": Engine("clique", family="clique", confirmations=2, max_reorg_depth=2, repairs_forks=True),
    "qbft": Engine("qbft", **_BFT),
    "ibft": Engine("ibft", **_BFT),
    "ibft2": Engine("ibft2", **_BFT),
}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise SpecError(f"unknown consensus engine {name!r}", hint=f"engines: {', '.join(ENGINES)}") from None


def engine_of(spec) -> Engine:
    """The engine of a NetworkSpec."""
    return engine(spec.consensus.engine)
