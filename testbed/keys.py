"""Keys for nodes, validators and accounts.

Every node has one secp256k1 key: its p2p identity (enode) and, on validator nodes, its
sealing identity (Clique signer / QBFT validator). Every organization has funded accounts;
the consortium has one operator account that deploys contracts. Private keys live only in
files of mode 0600 under the network's state directory and are never printed or logged:
the dataclasses below hide them from repr().
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_keys import keys as eth_keys
from eth_keys.constants import SECPK1_N

from testbed.errors import StateError


@dataclass(frozen=True)
class KeyPair:
    private_key: str | None = field(repr=False)  # 64 hex chars, no 0x; None: only the public half is held
    public: str | None = field(default=None, repr=False)  # 128 hex chars, for a key held by its public half

    @classmethod
    def public_only(cls, public_key: str) -> "KeyPair":
        """Another party's key, known by its public half (an enode id): address and enode, no signing."""
        raw = bytes.fromhex(public_key.removeprefix("0x"))
        if len(raw) != 64:
            raise StateError(f"not a 64-byte public key: {public_key[:20]}...")
        return cls(None, raw.hex())

    @classmethod
    def generate(cls) -> "KeyPair":
        while True:
            candidate = secrets.token_bytes(32)
            # valid secp256k1 scalars are in [1, n-1]; the rejection is astronomically rare
            if 0 < int.from_bytes(candidate, "big") < SECPK1_N:
                return cls(candidate.hex())

    @property
    def _key(self) -> eth_keys.PrivateKey:
        if self.private_key is None:
            raise StateError("this process holds only the public half of this key (it is another party's)")
        return eth_keys.PrivateKey(bytes.fromhex(self.private_key))

    @property
    def _public(self) -> eth_keys.PublicKey:
        return eth_keys.PublicKey(bytes.fromhex(self.public)) if self.private_key is None else self._key.public_key

    @property
    def address(self) -> str:
        return self._public.to_checksum_address()

    @property
    def public_key(self) -> str:
        """Uncompressed public key without the 04 prefix (128 hex chars): the enode id."""
        return self._public.to_bytes().hex()

    def account(self):
        return Account.from_key(self._key.to_bytes())


def write_secret(path: Path, content: str | bytes) -> None:
    """Write a file readable by its owner only (0600), created with that mode from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class NetworkKeys:
    """All keys of one network: node keys by node name, accounts by org, the operator."""

    nodes: dict[str, KeyPair]
    accounts: dict[str, list[KeyPair]]
    operator: KeyPair | None  # None in a process that holds one organization's keys only

    @classmethod
    def generate(cls, node_names_by_org: dict[str, list[str]], accounts_by_org: dict[str, int]) -> "NetworkKeys":
        return cls(
            nodes={name: KeyPair.generate() for names in node_names_by_org.values() for name in names},
            accounts={org: [KeyPair.generate() for _ in range(n)] for org, n in accounts_by_org.items()},
            operator=KeyPair.generate(),
        )

    def save(self, keys_dir: Path) -> None:
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(keys_dir, 0o700)
        for name, pair in self.nodes.items():
            write_secret(keys_dir / "nodes" / f"{name}.key", pair.private_key)
        for org, pairs in self.accounts.items():
            records = [{"address": p.address, "private_key": p.private_key} for p in pairs]
            write_secret(keys_dir / "accounts" / f"{org}.json", json.dumps(records, indent=1))
        write_secret(keys_dir / "operator.key", self.operator.private_key)

    @classmethod
    def load(cls, keys_dir: Path) -> "NetworkKeys":
        try:
            nodes = {p.stem: KeyPair(p.read_text().strip()) for p in sorted((keys_dir / "nodes").glob("*.key"))}
            accounts = {
                p.stem: [KeyPair(r["private_key"]) for r in json.loads(p.read_text())]
                for p in sorted((keys_dir / "accounts").glob("*.json"))
            }
            operator = KeyPair((keys_dir / "operator.key").read_text().strip())
        except (OSError, ValueError, KeyError) as exc:
            raise StateError(f"{keys_dir}: key files are missing or damaged ({exc.__class__.__name__})",
                             hint="run 'testbed down' and 'testbed up' to regenerate the network") from None
        return cls(nodes=nodes, accounts=accounts, operator=operator)

    @classmethod
    def load_org(cls, keys_dir: Path, org: str, node_public_keys: dict[str, str]) -> "NetworkKeys":
        """One organization's view, for its own processes (its Solver, its consumer side): that
        org's account keys only; every node by its public key (from the network record's enodes);
        no operator key. No other file under keys/ is opened."""
        path = keys_dir / "accounts" / f"{org}.json"
        try:
            accounts = {org: [KeyPair(r["private_key"]) for r in json.loads(path.read_text())]}
        except FileNotFoundError:
            raise StateError(f"no organization {org!r} in this network", hint=f"no key file {path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise StateError(f"{path}: key file is missing or damaged ({exc.__class__.__name__})") from None
        nodes = {name: KeyPair.public_only(public) for name, public in node_public_keys.items()}
        return cls(nodes=nodes, accounts=accounts, operator=None)

    def of(self, org: str) -> "OrgAccounts":
        """The org's accounts by signing purpose (see OrgAccounts)."""
        pairs = self.accounts.get(org)
        if pairs is None:
            raise StateError(f"no organization {org!r} in this network",
                             hint=f"organizations: {', '.join(self.accounts) or 'none'}")
        return OrgAccounts.split(org, pairs)

    def account_labels(self) -> dict[str, str]:
        """Every account's address (lower case) -> "<org> <purpose>" (load senders: "<org> load")."""
        labels = {self.operator.address.lower(): "operator"} if self.operator is not None else {}
        for org, pairs in self.accounts.items():
            for i, pair in enumerate(pairs):
                labels[pair.address.lower()] = f"{org} {PURPOSES[i] if i < len(PURPOSES) else 'load'}"
        return labels

    def funded_addresses(self) -> list[str]:
        operator = [self.operator.address] if self.operator is not None else []
        return operator + [p.address for pairs in self.accounts.values() for p in pairs]


# Every signing purpose of an organization has an account no other purpose signs with, so two
# senders never race for one account's nonces (a scenario's request and the load funder once
# shared account 0). The order is the order of the spec's generated accounts; what is left
# over after the purposes is the org's own load senders (at least one).
PURPOSES = ("steps", "funder", "publisher", "consumer", "solver")
MIN_LOAD_ACCOUNTS = 1
MIN_ACCOUNTS = len(PURPOSES) + MIN_LOAD_ACCOUNTS


@dataclass(frozen=True)
class OrgAccounts:
    """One organization's accounts by purpose.

    steps: the scenario's CTI steps and the org's votes (publish, buy, request, feedback);
    funder: funds load accounts; publisher: seeds listings and publishes under CTI load;
    consumer: the consumer side of delivery (`testbed`/`solver` consumer commands);
    solver: the org's Solver; load: the plain load driver's senders and CTI-load consumers.
    """

    steps: KeyPair
    funder: KeyPair
    publisher: KeyPair
    consumer: KeyPair
    solver: KeyPair
    load: tuple[KeyPair, ...]

    @classmethod
    def split(cls, org: str, pairs: list[KeyPair]) -> "OrgAccounts":
        if len(pairs) < MIN_ACCOUNTS:
            raise StateError(f"organization {org!r} has {len(pairs)} accounts; each signing purpose "
                             f"({', '.join(PURPOSES)}) needs its own and load at least {MIN_LOAD_ACCOUNTS}",
                             hint=f"set accounts: {MIN_ACCOUNTS} or more for it in the network spec and "
                                  "recreate the network (testbed down --purge; testbed up)")
        return cls(*pairs[:len(PURPOSES)], load=tuple(pairs[len(PURPOSES):]))
