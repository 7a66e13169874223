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
    stall_hint: str  # what a chain that stopped growing means on this engine, and what to do

    @property
    def final(self) -> bool:
        return self.confirmations == 0

    def genesis_delay_s(self, nodes: int) -> float:
        """How far ahead of now a new network's genesis timestamp goes. Clique: block 1 cannot be
        sealed before genesis time + period, so a few seconds let every signer peer before anyone
        seals (competing first blocks can leave Clique stuck on equal-weight branches). BFT: 0."""
        return 5 + 0.5 * nodes if self.family == "clique" else 0.0


_BFT = dict(family="bft", confirmations=0, max_reorg_depth=0, repairs_forks=False,
            stall_hint="a BFT chain halts while fewer than 2f+1 validators (3 of 4) are live and peered: "
                       "start the stopped validators or heal the partition; nothing needs repair")
ENGINES: dict[str, Engine] = {
    "clique": Engine("clique", family="clique", confirmations=2, max_reorg_depth=2, repairs_forks=True,
                     stall_hint="'testbed watch' rewinds a Clique chain stuck on two branches"),
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
