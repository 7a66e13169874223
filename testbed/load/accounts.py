"""Load accounts: one funded account per Locust user, so no nonce is ever shared.

Genesis funds only the spec's organization accounts. Load needs many more senders (one per
user, and a user offers at most a few tens of tx/s), so `make_accounts` creates throwaway
keys in memory (never written to disk; they hold only load money) and `fund_accounts`
sends each one `amount_wei` from its organization's funder account (no other purpose signs
with it) with
client-signed transfers, waiting until every funding transfer is in a block. Each account
then belongs to its organization and sends to that organization's node.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from testbed.chain.inclusion import InclusionTracker
from testbed.chain.rpc import RpcClient
from testbed.chain.txs import (LONDON, FeeRules, SignedTx, TxSigner, TxRecord, is_nonce_conflict, nonce_of,
                                send_batch)
from testbed.clients import fee_rules
from testbed.errors import ChainError
from testbed.poll import poll_until

FUNDING_WEI = 1_000 * 10**18  # a transfer costs at most 21000 * 10 gwei; this lasts millions of them


@dataclass
class LoadAccount:
    org: str
    node: str
    rpc_url: str
    signer: TxSigner
    nonce: int = 0
    presigned: deque = field(default_factory=deque)  # (nonce, hash, raw)
    inflight: object = None  # the greenlet sending this account's last batch (the next user waits for it)
    signed_late: int = 0  # transactions signed while sending because the pre-signed stock ran out

    @property
    def address(self) -> str:
        return self.signer.address

    def presign_transfers(self, count: int, to: str) -> None:
        """Sign `count` more transfers ahead of sending, continuing the nonce sequence."""
        start = self.nonce + len(self.presigned)
        for nonce in range(start, start + count):
            self.presigned.append((nonce, *self.signer.sign(nonce, to)))

    def take(self, count: int, to: str) -> list[tuple[int, str, str]]:
        """The next `count` signed transfers (signing more if the pre-signed stock ran out)."""
        if len(self.presigned) < count:
            self.signed_late += count - len(self.presigned)
            self.presign_transfers(count - len(self.presigned), to)
        batch = [self.presigned.popleft() for _ in range(count)]
        self.nonce = batch[-1][0] + 1
        return batch


@dataclass(frozen=True)
class AccountRef:
    """An account known by its address only (a distributed run's worker holds the key)."""
    org: str
    node: str
    rpc_url: str
    address: str


def new_account(org: str, node: str, rpc_url: str, chain_id: int, fees: FeeRules = LONDON) -> LoadAccount:
    """A fresh throwaway key, in memory only."""
    return LoadAccount(org=org, node=node, rpc_url=rpc_url,
                       signer=TxSigner("0x" + secrets.token_hex(32), chain_id=chain_id, fees=fees))


def make_accounts(net, per_org: int) -> dict[str, list[LoadAccount]]:
    """`per_org` fresh accounts per organization, bound to that organization's first node."""
    accounts: dict[str, list[LoadAccount]] = {}
    fees = fee_rules(net.spec)
    for org in net.members:
        node = net.first_node(org.name)
        accounts[org.name] = [new_account(org.name, node.name, node.rpc_url, net.spec.chain_id, fees)
                              for _ in range(per_org)]
    return accounts


def fund_accounts(net, accounts: dict[str, list], *, amount_wei: int = FUNDING_WEI,
                  timeout: float = 60, progress: Callable[[str], None] = lambda _: None) -> list[TxRecord]:
    """Fund every load account (a LoadAccount or an AccountRef) from its organization's funder
    account; wait for inclusion."""
    records: list[TxRecord] = []
    fees = fee_rules(net.spec)
    with RpcClient(net.nodes[0].rpc_url, timeout=10) as watch:
        tracker = InclusionTracker.from_head(watch)
        for org, group in accounts.items():
            funder = TxSigner(net.keys.of(org).funder.private_key, chain_id=net.spec.chain_id, fees=fees)
            with RpcClient(group[0].rpc_url, timeout=30) as rpc:
                sent = _fund_group(rpc, funder, org, group, amount_wei)
            for record in sent:
                tracker.submitted(record)
            records += sent
        progress(f"funding {len(records)} load accounts from the organizations' genesis accounts")
        if not tracker.wait_all(watch, timeout):
            raise ChainError(f"{len(tracker.pending)} funding transfers not included after {timeout:.0f}s")
        _wait_funded_everywhere(accounts, amount_wei, timeout)
    return records


def _fund_group(rpc: RpcClient, signer: TxSigner, org: str, group: list, amount_wei: int,
                retries: int = 3) -> list[TxRecord]:
    """One funding transfer per account, from `signer`'s account. That account may have other senders
    (a scenario's CTI calls): a transfer whose nonce one of them took first is signed again with
    the node's next nonce, up to `retries` rounds; any other refusal is an error."""
    sent: list[TxRecord] = []
    targets = list(group)
    for attempt in range(retries + 1):
        start = nonce_of(rpc, signer.address)
        signed = []
        for i, account in enumerate(targets):
            tx_hash, raw = signer.sign(start + i, account.address, value=amount_wei)
            record = TxRecord(hash=tx_hash, org=org, node=group[0].node, sender=signer.address, nonce=start + i)
            signed.append(SignedTx(record=record, raw=raw))
        send_batch(rpc, signed)
        sent += [s.record for s in signed if s.record.status != "rejected"]
        rejected = [(account, s.record) for account, s in zip(targets, signed) if s.record.status == "rejected"]
        if not rejected:
            return sent
        errors = [record.error for _, record in rejected]
        if attempt == retries or not all(is_nonce_conflict(e) for e in errors):
            raise ChainError(f"funding load accounts of {org}: {len(rejected)} transfers rejected (first: {errors[0]})")
        targets = [account for account, _ in rejected]
        time.sleep(0.2 * (attempt + 1))
    return sent


def _wait_funded_everywhere(accounts: dict[str, list], amount_wei: int, timeout: float) -> None:
    """Each org's node must see its accounts funded (it may be a block behind the watched node)."""
    deadline = time.monotonic() + timeout
    for org, group in accounts.items():
        balances = [("eth_getBalance", [a.address, "latest"]) for a in group]
        with RpcClient(group[0].rpc_url, timeout=10) as rpc:
            poll_until(lambda: all(int(b, 16) >= amount_wei for b in rpc.batch(balances)),
                       timeout=deadline - time.monotonic(),
                       error=lambda: ChainError(f"{org}: load accounts not funded on {group[0].node} "
                                                f"after {timeout:.0f}s"))
