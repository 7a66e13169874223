"""The shape every node-client adapter has (geth, goquorum, besu).

Clients *build*: pure functions from a spec and a node plan to genesis, files and a command
line. They never start processes or touch the network; backends do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from testbed.chain.txs import FeeRules
from testbed.keys import KeyPair
from testbed.spec.network import NetworkSpec


# Transaction-pool limits for geth-family clients (geth, GoQuorum), raised for load tests:
# geth 1.13 defaults (16 slots per account, 5120 in all) drop transactions under a benchmark.
GETH_TXPOOL_FLAGS = [
    "--txpool.globalslots", "40000", "--txpool.accountslots", "1024",
    "--txpool.globalqueue", "10000", "--txpool.accountqueue", "1024",
    "--txpool.lifetime", "30m",
]


# What a node serves on its HTTP/WS JSON-RPC: reading the chain and sending signed transactions.
# Validator votes, sealing control, rewinds and node admin are never there: geth-family nodes
# (geth, GoQuorum) serve them only on their IPC socket, in a 0700 directory of the harness's user.
PUBLIC_APIS = ["eth", "net", "web3", "txpool"]


def ipc_socket_in(argv: list[str]) -> Path | None:
    """The IPC socket a node's command line names: geth-family `--ipcpath PATH`, Besu
    `--Xrpc-ipc-path=PATH`; None when it names none."""
    if "--ipcpath" in argv:
        return Path(argv[argv.index("--ipcpath") + 1])
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--Xrpc-ipc-path=")]
    return Path(given[0]) if given else None


def geth_ipc_flags(ipc: Path | None) -> list[str]:
    """The IPC socket of a geth-family node (it serves every namespace there), or none at all."""
    return ["--ipcpath", str(ipc)] if ipc is not None else ["--ipcdisable"]


def own_hosts(node: NodePlan) -> list[str]:
    """The names a request to this node's RPC may carry as its Host (and a page as its origin)."""
    return list(dict.fromkeys(["localhost", "127.0.0.1", node.host]))


def geth_rpc_flags(node: NodePlan, apis: list[str], *, authrpc: bool) -> list[str]:
    """HTTP, WS (and, with `authrpc`, engine-API) JSON-RPC and metrics listeners of a geth-family
    node (geth, GoQuorum), all bound to the node's own address; cache size and RPC caps."""
    api, p = ",".join(apis), node.ports
    flags = [
        "--http", "--http.addr", node.host, "--http.port", str(p.http), "--http.api", api,
        # only requests naming this node's own host: a web page on another name (DNS rebinding)
        # cannot reach the RPC through a browser
        "--http.vhosts", ",".join(own_hosts(node)),
        "--ws", "--ws.addr", node.host, "--ws.port", str(p.ws), "--ws.api", api,
        # a browser page may open a WebSocket only from the node's own host names
        "--ws.origins", ",".join(f"http://{h}" for h in own_hosts(node)),
    ]
    if authrpc:
        flags += ["--authrpc.addr", node.host, "--authrpc.port", str(p.authrpc)]
    return flags + [
        "--metrics", "--metrics.addr", node.host, "--metrics.port", str(p.metrics),
        "--cache", "128",
        "--rpc.gascap", "0", "--rpc.txfeecap", "0",
    ]


@dataclass(frozen=True)
class NodePorts:
    p2p: int
    http: int
    ws: int
    authrpc: int
    metrics: int

    @classmethod
    def for_index(cls, base: int, index: int) -> "NodePorts":
        start = base + 10 * index
        return cls(p2p=start, http=start + 1, ws=start + 2, authrpc=start + 3, metrics=start + 4)

    def all(self) -> list[int]:
        return [self.p2p, self.http, self.ws, self.authrpc, self.metrics]


@dataclass(frozen=True)
class NodePlan:
    """Everything about one node that does not depend on its running process."""

    name: str  # e.g. "acme-v1" (validator) or "acme-m1" (member)
    org: str
    role: str  # "validator" | "member"
    index: int  # position in the network, fixes the ports
    host: str  # address the node binds to and peers dial
    ports: NodePorts
    key: KeyPair = field(repr=False)

    @property
    def is_validator(self) -> bool:
        return self.role == "validator"

    @property
    def address(self) -> str:
        """The node key's address: the validator/signer identity."""
        return self.key.address

    @property
    def enode(self) -> str:
        return f"enode://{self.key.public_key}@{self.host}:{self.ports.p2p}"

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ports.ws}"


@dataclass(frozen=True)
class RenderedFile:
    """A file a client needs in a node's directory. Secret files are written with mode 0600."""

    path: str  # relative to the node directory
    content: str = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class ValidatorRpc:
    """Names of the validator-set JSON-RPC methods of a client for one engine."""

    list_method: str  # params: [block tag] -> list of addresses
    propose_method: str  # params: [address, bool add]
    discard_method: str | None = None  # params: [address]: drop a pending proposal once it is decided
    start_sealing_method: str | None = None  # called on a node voted in, if it does not seal by itself
    stop_sealing_method: str | None = None  # called on a node voted out, to keep its log quiet
    signer_method: str | None = None  # params: [block hash] -> who sealed it (an address, or an object with
    #                                   its `Author`, as GoQuorum's istanbul API answers); None: the block's `miner`


class ClientAdapter(Protocol):
    name: str  # registry key, e.g. "geth"
    binary: str  # toolchain tool name that runs this client
    engines: tuple[str, ...]
    fee_rules: FeeRules  # transaction type and gas price its genesis calls for
    admin_over_ipc: bool  # votes, sealing and rewinds go through the node's IPC socket (else its RPC)
    sealer_tool: str | None  # a toolchain tool that holds the sealing key outside the node (geth: clef)

    def genesis(self, spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
        """Genesis document for this engine. `validators` are addresses, `alloc` address -> wei."""
        ...

    def node_files(self, spec: NetworkSpec, node: NodePlan, peers: list[NodePlan]) -> list[RenderedFile]:
        """Config, key and peer files for one node (paths relative to the node directory)."""
        ...

    def init_command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, genesis_path: Path) -> list[str] | None:
        """Command that initialises the node's database from genesis, or None if not needed."""
        ...

    def command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, peers: list[NodePlan],
                ipc: Path | None = None, sealer: Path | None = None, signer_dir: Path | None = None) -> list[str]:
        """Command line that runs the node in the foreground; `ipc`: where its admin socket goes
        (None: no IPC at all); `sealer`: the sealer tool's binary, its socket in `signer_dir`
        (None: the client seals by itself)."""
        ...

    def environment(self, spec: NetworkSpec, node: NodePlan) -> dict[str, str]:
        """Extra environment variables for the node process."""
        ...

    def validator_rpc(self, engine: str) -> ValidatorRpc:
        ...

    def rpc_apis(self, engine: str) -> list[str]:
        """JSON-RPC namespaces the node serves on HTTP/WS (never personal, admin or votes)."""
        ...
