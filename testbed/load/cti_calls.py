"""CTI load: pre-signed contract calls, member accounts and their plans, setup on a network.

No Locust here (unit-testable without gevent): the users are in cti_users.py.

Accounts. The Membership contract admits accounts only with a whole new organization, by
vote of the members; an org cannot add accounts to itself. So CTI users sign with the
spec's own genesis accounts of each org (founding members), one user per account, never
shared: the org's load accounts consume (`testbed.keys.OrgAccounts.load`) and, in the mix,
its publisher account publishes; the steps, funder, consumer and Solver accounts are never
used here. With `accounts: 8` per org (four-orgs) that is 3 consumers per org, 12 on
four-orgs (plus 4 publishers in the mix): at 50 tx/s per user the CTI offered rate is
capped at 600 tx/s.

Pre-signing. Each contract call is ABI-encoded once per (function, arguments) with web3's
contract encoding, its gas estimated once per function (x GAS_MARGIN), and signed with
explicit nonces by the fast `TxSigner` (same EIP-1559 bytes as eth-account): the hot
path does no RPC except sending. A consumer batch of n is one `buy(token, n-1)` followed by
n-1 `request(token, key)` with consecutive nonces (executed in that order in one block or
consecutive ones), so ~98 % of the consumer's transactions are requests. The org Solvers
(started by `testbed deploy`) deliver them by themselves (accept and finish in one `deliver` each).

Every row keeps its own kind (`cti_buy`, `cti_request`, `cti_publish`, `cti_mint`); after the
run, `CtiLoad.conclude` reads the receipts of the included CTI transactions and marks
reverted ones `status="reverted"` with the reason `reverted (gas used N)`, and writes
`cti.json` (tokens, gas, the buy amount, Activity counters before/after).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from testbed.chain.txs import TxSigner
from testbed.clients import fee_rules
from testbed.load.accounts import LoadAccount

GAS_MARGIN = 1.3
PRICE_WEI = 1  # listings the load buys from: 1 wei per token
SUPPLY = 10**15  # tokens minted per seeded listing (MAX_SUPPLY is 2^64-1)
CONSUMER_POOL, PUBLISHER_POOL = "cti_consumer", "cti_publisher"
CTI_KINDS = ("cti_buy", "cti_request", "cti_publish", "cti_mint")


@dataclass(frozen=True)
class Call:
    """An unsigned contract call: everything but the nonce."""

    kind: str
    to: str
    data: bytes
    gas: int
    value: int = 0


def encode(contract, function: str, args: list) -> bytes:
    """web3's ABI encoding of `function(*args)` (no network needed)."""
    return bytes.fromhex(contract.encode_abi(function, args=list(args)).removeprefix("0x"))


def sign_call(signer: TxSigner, nonce: int, call: Call) -> tuple[int, str, str, str]:
    """(nonce, hash, raw, kind): a row ChainUser.submit accepts."""
    tx_hash, raw = signer.sign(nonce, call.to, value=call.value, gas=call.gas, data=call.data)
    return nonce, tx_hash, raw, call.kind


class CallBook:
    """Encodes the CTI calls of the load (each once) with fixed gas per function."""

    def __init__(self, contracts: dict[str, Any], gas: dict[str, int], price_wei: int = PRICE_WEI) -> None:
        self.c, self.gas, self.price = contracts, gas, price_wei
        self._cache: dict[tuple, Call] = {}

    def _call(self, kind: str, contract: str, function: str, args: list, value: int = 0) -> Call:
        key = (function, tuple(a if not isinstance(a, list) else tuple(a) for a in args), value)
        call = self._cache.get(key)
        if call is None:
            call = self._cache[key] = Call(kind, self.c[contract].address, encode(self.c[contract], function, args),
                                           self.gas[function], value)
        return call

    def buy(self, token: int, amount: int) -> Call:
        return self._call("cti_buy", "CtiMarket", "buy", [token, amount], value=self.price * amount)

    def request(self, token: int, key: bytes) -> Call:
        return self._call("cti_request", "Tasks", "request", [token, bytes(key)])

    def mint(self, token: int, amount: int = 1) -> Call:
        return self._call("cti_mint", "CtiMarket", "mint", [token, amount])

    def publish(self, uuid: str, solver: str, price_wei: int = PRICE_WEI, supply: int = 1000) -> Call:
        content = hashlib.sha3_256(uuid.encode()).digest()  # any non-zero hash: nobody requests these
        args = [uuid, f"load listing {uuid[:8]}", content, price_wei, supply, [solver]]
        return Call("cti_publish", self.c["CtiMarket"].address, encode(self.c["CtiMarket"], "publish", args),
                    self.gas["publish"])  # unique per listing: not cached


def consumer_batch(book: CallBook, token: int, key: bytes, size: int) -> list[Call]:
    """One buy of size-1 tokens, then size-1 requests (each spends one token)."""
    if size < 2:
        raise ValueError("a consumer batch needs at least 2 transactions (buy + request)")
    return [book.buy(token, size - 1)] + [book.request(token, key)] * (size - 1)


def publisher_batch(book: CallBook, token: int, solver: str, size: int, serial: str) -> list[Call]:
    """One new listing, then size-1 mints of one token on the org's own listing."""
    return [book.publish(serial, solver)] + [book.mint(token, 1)] * (size - 1)


@dataclass
class CtiAccount(LoadAccount):
    """A genesis member account with a plan: `plan(size, serial)` -> the next batch of calls."""

    plan: Callable[[int, int], list[Call]] | None = None
    batches: int = 0

    def presign_batches(self, count: int, size: int) -> None:
        nonce = self.nonce + len(self.presigned)
        for _ in range(count):
            for call in self.plan(size, self.batches):
                self.presigned.append(sign_call(self.signer, nonce, call))
                nonce += 1
            self.batches += 1

    def take(self, count: int, to: str = "") -> list[tuple]:
        """The next whole batch (`count` calls); batches are never split."""
        if len(self.presigned) < count:
            need = -(-(count - len(self.presigned)) // count)
            self.signed_late += need * count
            self.presign_batches(need, count)
        batch = [self.presigned.popleft() for _ in range(count)]
        self.nonce = batch[-1][0] + 1
        return batch


# ---- setup on a network --------------------------------------------------------------------

@dataclass
class CtiLoad:
    """What the CTI users of a run share: deployment, listings, calls, accounts, records."""

    net: Any
    users: str
    consumers: dict[str, list[CtiAccount]] = field(default_factory=dict)
    publishers: dict[str, list[CtiAccount]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # org -> its seeded listing
    gas: dict[str, int] = field(default_factory=dict)
    activity_before: dict[str, dict[str, int]] = field(default_factory=dict)
    book: CallBook | None = None
    org_ids: dict[str, int] = field(default_factory=dict)
    batch_size: int = 50  # every buy buys batch_size - 1 tokens

    def accounts(self) -> list[CtiAccount]:
        return [a for pool in (self.consumers, self.publishers) for g in pool.values() for a in g]

    def presign(self, rate: float, seconds: float, batch_size: int, per_user_rate: float) -> None:
        """Whole batches for `seconds` at one user's share on every CTI account (any may be taken)."""
        if rate <= 0 or seconds <= 0:
            return
        share = min(rate, per_user_rate) * seconds
        batches = int(share // batch_size) + 1
        for account in self.accounts():
            missing = batches - len(account.presigned) // batch_size
            if missing > 0:
                account.presign_batches(missing, batch_size)

    def activity(self) -> dict[str, dict[str, int]]:
        from testbed.cti import CtiClient
        from testbed.cti.deploy import connect

        from testbed.contracts import deployment_of

        node = self.net.nodes[0]
        client = CtiClient(connect(node.rpc_url), deployment_of(self.net), self.net.keys.accounts[next(iter(self.org_ids))][0].private_key)
        return {org: client.activity(oid) for org, oid in self.org_ids.items()}

    def conclude(self, recorder, run) -> dict:
        """Mark reverted CTI calls from their receipts; write cti.json; return its content."""
        from testbed.chain.rpc import RpcClient

        rows = [r for r in recorder.rows if r.kind in CTI_KINDS and r.status == "included"]
        reverted = 0
        with RpcClient(self.net.nodes[0].rpc_url, timeout=30) as rpc:
            for i in range(0, len(rows), 200):
                chunk = rows[i:i + 200]
                receipts = rpc.batch([("eth_getTransactionReceipt", [r.hash]) for r in chunk])
                for row, receipt in zip(chunk, receipts):
                    if receipt is not None and int(receipt["status"], 16) != 1:
                        row.status, row.error = "reverted", f"reverted (gas used {int(receipt['gasUsed'], 16)})"
                        reverted += 1
        out = {"users": self.users, "tokens": self.tokens, "org_ids": self.org_ids, "gas": self.gas,
               "buy_amount": self.batch_size - 1, "activity_before": self.activity_before, "activity_after": self.activity(),
               "reverted": reverted,
               "consumers": {o: [a.address for a in g] for o, g in self.consumers.items()},
               "publishers": {o: [a.address for a in g] for o, g in self.publishers.items()}}
        run.write_json("cti.json", out)
        return out


def prepare_cti(net, users: str, batch_size: int, progress: Callable[[str], None] = lambda _: None) -> CtiLoad:
    """Listings to buy (one per org, its Solver authorized, its MISP event in the org's store),
    gas per function (estimated once), member accounts with their plans and nonces."""
    from testbed.contracts import deployment_of
    from testbed.solver_plugin import require_solver_plugin
    from testbed.cti import CtiClient
    from testbed.cti.client import bind
    from testbed.cti.deploy import connect

    deployment = deployment_of(net)
    solvers = require_solver_plugin()
    orgs = [o.name for o in net.members]
    if len(orgs) < 2:
        raise ValueError("CTI consumers buy another org's listing: at least 2 organizations are needed")
    load = CtiLoad(net=net, users=users, batch_size=batch_size)
    for org in orgs:
        load.tokens[org] = solvers.seed(net, org, 1, supply=SUPPLY, price_wei=PRICE_WEI, progress=progress)[0].token_id
    node_of = {org: net.first_node(org) for org in orgs}
    w3 = connect(node_of[orgs[0]].rpc_url)
    contracts = bind(w3, deployment)
    consumer_mix = users != "cti"  # in the mix account 1 publishes; with consumers only it consumes too
    roles = {org: net.keys.of(org) for org in orgs}
    for org in orgs:
        load.consumers[org] = list(roles[org].load)
        load.publishers[org] = [roles[org].publisher] if consumer_mix else []
    # gas: estimated once per function, from real state (warm-up buy so a request can be estimated)
    first_org, target_org = orgs[0], orgs[1]
    first = load.consumers[first_org][0]
    client = CtiClient(w3, deployment, first.private_key)
    client.buy(load.tokens[target_org], 1)
    key = solvers.delivery_public_key(first.private_key)
    est = {
        # a first buy of a token by an account costs more (new balance slot): estimate it from a fresh one
        "buy": max(w3.eth.estimate_gas({"from": a.address, "to": contracts["CtiMarket"].address, "value": PRICE_WEI * 50,
                                        "data": contracts["CtiMarket"].encode_abi("buy", args=[load.tokens[target_org], 50])})
                   for a in load.consumers[first_org][-1:] + [first]),
        "request": w3.eth.estimate_gas({"from": first.address, "to": contracts["Tasks"].address,
                                        "data": contracts["Tasks"].encode_abi("request", args=[load.tokens[target_org], key])}),
    }
    pub = roles[first_org].publisher
    est["mint"] = w3.eth.estimate_gas({"from": pub.address, "to": contracts["CtiMarket"].address,
                                       "data": contracts["CtiMarket"].encode_abi("mint", args=[load.tokens[first_org], 1])})
    est["publish"] = w3.eth.estimate_gas({"from": pub.address, "to": contracts["CtiMarket"].address, "data": contracts[
        "CtiMarket"].encode_abi("publish", args=["00000000-load-estimate", "load listing estimate", b"\x01" * 32, 1, 1000,
                                                 [roles[first_org].solver.address]])})
    load.gas = {f: int(g * GAS_MARGIN) for f, g in est.items()}
    load.book = CallBook(contracts, load.gas)
    progress(f"CTI load: listings {load.tokens}, gas per call {load.gas}")
    chain_id, fees = net.spec.chain_id, fee_rules(net.spec)
    for i, org in enumerate(orgs):
        node = node_of[org]
        # each batch buys from the next other org in turn (never its own), starting with the next one,
        # so that every publisher's Solver gets work even when few users run
        others = [load.tokens[orgs[(i + k) % len(orgs)]] for k in range(1, len(orgs))]
        for pool, pairs in ((load.consumers, load.consumers[org]), (load.publishers, load.publishers[org])):
            accounts = []
            for pair in pairs:
                signer = TxSigner(pair.private_key, chain_id=chain_id, fees=fees)
                account = CtiAccount(org=org, node=node.name, rpc_url=node.rpc_url, signer=signer)
                account.nonce = w3.eth.get_transaction_count(pair.address, "pending")
                if pool is load.consumers:
                    k = solvers.delivery_public_key(pair.private_key)
                    account.plan = (lambda size, serial, ts=others, k=k:
                                    consumer_batch(load.book, ts[serial % len(ts)], k, size))
                else:
                    own, solver, tag = load.tokens[org], roles[org].solver.address, pair.address[2:10].lower()
                    account.plan = (lambda size, serial, t=own, s=solver, tag=tag:
                                    publisher_batch(load.book, t, s, size, f"{tag}-{serial:08d}-load"))
                accounts.append(account)
            pool[org] = accounts
    load.org_ids = {org: client.org_of(pairs[0].address)[0] for org, pairs in net.keys.accounts.items()}
    load.activity_before = load.activity()
    return load
