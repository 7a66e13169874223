"""The network spec: one YAML file describes the whole consortium network.

One schema in one place. `testbed schema` exports it as JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from testbed.engines import ENGINES
from testbed.keys import MIN_ACCOUNTS, MIN_LOAD_ACCOUNTS, PURPOSES
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ClientName = Literal["geth", "goquorum", "besu"]
EngineName = Literal[tuple(ENGINES)]  # type: ignore[valid-type]  # the engine registry's names
BackendName = Literal["local", "netns", "docker", "ansible"]


# Which engines each node client runs, its first the default (the one source: each client
# adapter's `engines` is its entry here)
CLIENT_ENGINES: dict[str, tuple[str, ...]] = {
    "goquorum": ("qbft", "ibft"),
    "geth": ("clique",),
    "besu": ("qbft", "ibft2", "clique"),
}


def engines_by_client() -> dict[str, tuple[str, ...]]:
    """Which engines each node client runs."""
    return dict(CLIENT_ENGINES)

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"

# Clients that can share one network: the same QBFT protocol and one genesis block (GoQuorum's
# fork schedule: pre-London, gas price 0). Where they run side by side: containers (docker).
MIXABLE = {"engine": "qbft", "clients": frozenset({"goquorum", "besu"}), "backends": ("docker",)}

# Upper bounds, with the reason: a spec past them is a mistake, not a bigger consortium.
MAX_ORGANIZATIONS = 128  # QBFT's messages grow with the square of the validators; 100 is already past 1 s blocks
MAX_NODES = 256  # one process per node on the machines running them; ten ports each from ports.base <= 60000
MAX_ACCOUNTS_TOTAL = 20_000  # every account is generated, written 0600 and funded in genesis at `up`
MAX_BALANCE_ETH = 10**15


def check_account_count(n: int) -> int:
    """An org's `accounts`: each signing purpose needs its own (no two senders share nonces)."""
    if n < MIN_ACCOUNTS:
        raise ValueError(f"{n} accounts are too few: each signing purpose ({', '.join(PURPOSES)}) needs an account "
                         f"of its own and load at least {MIN_LOAD_ACCOUNTS}; set accounts: {MIN_ACCOUNTS} or more")
    return n


class Strict(BaseModel):
    # strict: a value of the wrong type is an error, never coerced ("21000", "yes", 4.0 or true are
    # not numbers or booleans); unknown keys are errors too
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Consensus(Strict):
    engine: EngineName = Field("qbft", description="Consensus engine (default: the client's first: geth clique, "
                               "goquorum qbft, besu qbft).")
    block_period: int = Field(1, ge=1, le=60, description="Seconds between blocks (at least 1: QBFT/IBFT need a period, "
                              "and a Clique period of 0 seals only with transactions, so an idle network never gets ready).")
    epoch: int = Field(30000, ge=1, le=10**9, description="Blocks per epoch (vote reset / checkpoint).")
    gas_limit: int = Field(100_000_000, ge=5_000_000, le=2**63 - 1, description="Block gas limit.")
    request_timeout: int = Field(10, ge=1, le=600, description="QBFT/IBFT round timeout in seconds.")


class Organization(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Organization name: lower case letters, digits, '-'.")
    validators: int = Field(1, ge=0, le=8, description="Validator (sealing) nodes of this organization.")
    members: int = Field(0, ge=0, le=8, description="Non-validating member nodes.")
    solver: bool = Field(True, description="Whether this organization runs a Solver.")
    client: ClientName | None = Field(None, description="This organization's node client, where it differs from the "
                                      "network's: a mixed GoQuorum + Besu QBFT network (docker backend).")
    accounts: int = Field(8, le=1000, description="Funded accounts generated for this organization: one per signing "
                          f"purpose ({', '.join(PURPOSES)}), the rest send load; at least {MIN_ACCOUNTS}.")

    @field_validator("accounts")
    @classmethod
    def _enough_accounts(cls, n: int) -> int:
        return check_account_count(n)

    @property
    def node_count(self) -> int:
        return self.validators + self.members


class Ports(Strict):
    base: int = Field(21000, ge=1024, le=60000, description="First port; node i uses base + 10*i .. base + 10*i + 4.")


class NetworkSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Network name; also the state directory name.")
    chain_id: int = Field(1337, ge=1, le=2**32, description="EIP-155 chain id.")
    client: ClientName = Field("goquorum", description="Node client.")
    backend: BackendName = Field("local", description="Where the nodes run.")
    image: str | None = Field(None, min_length=1, description="Container image of the node client (docker backend; "
                              "ansible backend for Besu/GoQuorum); default: the client's pinned image.")
    consensus: Consensus = Field(default_factory=Consensus)
    ports: Ports = Field(default_factory=Ports)
    account_balance_eth: int = Field(1_000_000, ge=1, le=MAX_BALANCE_ETH, description="Genesis balance of every funded "
                                     "account, in ether (at most 10^15: every balance together must fit the chain's "
                                     "256-bit words with room to spare).")
    organizations: list[Organization] = Field(min_length=1, max_length=MAX_ORGANIZATIONS,
                                              description=f"Member organizations (at most {MAX_ORGANIZATIONS}).")

    @model_validator(mode="before")
    @classmethod
    def _client_default_engine(cls, data):
        """No engine given: the client's first (so `client: geth` alone means geth Clique)."""
        if isinstance(data, dict) and isinstance(data.get("client"), str):
            consensus = data.get("consensus", {})
            if isinstance(consensus, dict) and "engine" not in consensus:
                engines = engines_by_client().get(data["client"])
                if engines:
                    data = {**data, "consensus": {**consensus, "engine": engines[0]}}
        return data

    @field_validator("organizations")
    @classmethod
    def _check_organizations(cls, orgs: list[Organization]) -> list[Organization]:
        seen: set[str] = set()
        for org in orgs:
            if org.name in seen:
                raise ValueError(f"duplicate organization name {org.name!r}; organization names must be unique")
            seen.add(org.name)
            if org.node_count == 0:
                raise ValueError(f"organization {org.name!r} has no nodes; give it validators >= 1 or members >= 1")
        if orgs and sum(o.validators for o in orgs) == 0:
            raise ValueError("the network has zero validators; give at least one organization validators >= 1")
        return orgs

    def _check_mix(self, table: dict[str, tuple[str, ...]]) -> None:
        if len(self.clients) == 1:
            return
        mixed = ", ".join(f"{o.name}: {o.client}" for o in self.organizations if o.client and o.client != self.client)
        if (set(self.clients) - MIXABLE["clients"] or self.consensus.engine != MIXABLE["engine"]
                or self.backend not in MIXABLE["backends"]):
            raise ValueError(f"organizations run another client than the network's {self.client!r} ({mixed}); clients "
                             f"mix only as {' + '.join(sorted(MIXABLE['clients']))} on engine {MIXABLE['engine']} with "
                             f"backend {' or '.join(MIXABLE['backends'])}; remove organizations[].client or change those")

    @model_validator(mode="after")
    def _check(self) -> "NetworkSpec":
        table = engines_by_client()
        if self.consensus.engine not in table[self.client]:
            pairs = ", ".join(f"{c}/{e}" for c, es in table.items() for e in es)
            raise ValueError(
                f"engine {self.consensus.engine!r} is not available on client {self.client!r}; valid client/engine pairs: {pairs}"
            )
        self._check_mix(table)
        nodes = sum(o.node_count for o in self.organizations)
        if nodes > MAX_NODES:
            raise ValueError(f"{nodes} nodes are more than the {MAX_NODES} a network may have (ten ports each, one "
                             "process per node); use fewer validators/members per organization")
        accounts = sum(o.accounts for o in self.organizations)
        if accounts > MAX_ACCOUNTS_TOTAL:
            raise ValueError(f"{accounts} accounts in all are more than {MAX_ACCOUNTS_TOTAL} (each is generated, "
                             "stored and funded at 'up'); lower organizations[].accounts")
        # ports.base <= 60000 and at most MAX_NODES nodes: the last port is at most 62,560
        return self

    def client_of(self, org: str) -> str:
        """The node client of organization `org` (its own, else the network's)."""
        return next((o.client or self.client for o in self.organizations if o.name == org), self.client)

    @property
    def clients(self) -> tuple[str, ...]:
        """Every node client in the network, the network's first."""
        return tuple(dict.fromkeys([self.client, *(o.client or self.client for o in self.organizations)]))

    @property
    def validator_count(self) -> int:
        return sum(o.validators for o in self.organizations)


def json_schema() -> dict:
    return NetworkSpec.model_json_schema()
