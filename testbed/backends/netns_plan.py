"""The address and name plan of a netns network, and the commands that build it (pure).

Every netns network gets one /19 block of the benchmarking range 198.18.0.0/15 (16 blocks,
so up to 16 netns networks coexist on one host). Inside block `b`:

    bridge (root namespace, where the harness runs)  <block>.0.1/19
    organization i, node n                            <block>.(i+1).(10+n)/19

Block 0 is 198.18.0.0/19: bridge 198.18.0.1, org 0 nodes at 198.18.1.10, 198.18.1.11, ...
Namespaces get no default route, only the on-link /19, so nothing inside can reach any
address outside the network's block.

Interface names are at most 15 characters and carry a 6-hex-digit hash of the network
name, so two networks never share a name: bridge `tb<h>br`, org i's veth pair
`tb<h>h<i>` (root side, on the bridge) and `tb<h>n<i>` (inside the namespace).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from testbed.errors import BackendError

RANGE = ipaddress.ip_network("198.18.0.0/15")
BLOCK_PREFIX = 19
BLOCKS = 2 ** (BLOCK_PREFIX - RANGE.prefixlen)  # 16
MAX_ORGS = 31  # /24s 1..31 of a /19 block
MAX_NODES_PER_ORG = 64  # hosts .10 .. .73 of an org's /24
IFNAMSIZ = 15


def short_hash(network: str) -> str:
    return hashlib.sha256(network.encode()).hexdigest()[:6]


def preferred_block(network: str) -> int:
    return int(short_hash(network), 16) % BLOCKS


def choose_block(network: str, used: set[int]) -> int:
    """The network's preferred block, or the next one no other network uses."""
    first = preferred_block(network)
    for step in range(BLOCKS):
        block = (first + step) % BLOCKS
        if block not in used:
            return block
    raise BackendError(f"all {BLOCKS} address blocks of {RANGE} are in use by other netns networks",
                       hint="bring one of them down ('testbed ls', 'testbed down NAME')")


def block_of(address: str) -> int | None:
    """Which /19 block of 198.18.0.0/15 an address falls in (None if outside the range)."""
    ip = ipaddress.ip_address(address)
    if ip not in RANGE:
        return None
    return (int(ip) - int(RANGE.network_address)) >> (32 - BLOCK_PREFIX)


@dataclass(frozen=True)
class NetnsPlan:
    network: str
    block: int

    @property
    def tag(self) -> str:
        return short_hash(self.network)

    # ---- addresses ----------------------------------------------------------------------
    @property
    def subnet(self) -> ipaddress.IPv4Network:
        base = int(RANGE.network_address) + (self.block << (32 - BLOCK_PREFIX))
        return ipaddress.ip_network((base, BLOCK_PREFIX))

    @property
    def bridge_address(self) -> str:
        return str(self.subnet.network_address + 1)

    def org_prefix(self, org_index: int) -> str:
        """The /24 holding every address of one organization (what a partition cuts)."""
        self._check_org(org_index)
        return str(ipaddress.ip_network((int(self.subnet.network_address) + 256 * (org_index + 1), 24)))

    def node_address(self, org_index: int, node_index: int) -> str:
        self._check_org(org_index)
        if not 0 <= node_index < MAX_NODES_PER_ORG:
            raise BackendError(f"the netns backend places at most {MAX_NODES_PER_ORG} nodes per organization")
        return str(ipaddress.ip_address(int(self.subnet.network_address) + 256 * (org_index + 1) + 10 + node_index))

    def _check_org(self, org_index: int) -> None:
        if not 0 <= org_index < MAX_ORGS:
            raise BackendError(f"the netns backend places at most {MAX_ORGS} organizations in one network",
                               hint="split the consortium or use another backend")

    # ---- names --------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"tb{self.tag}br"

    def host_veth(self, org_index: int) -> str:
        return f"tb{self.tag}h{org_index}"

    def ns_veth(self, org_index: int) -> str:
        return f"tb{self.tag}n{org_index}"

    def namespace(self, org: str) -> str:
        return f"tb-{self.tag}-{org}"

    @property
    def namespace_prefix(self) -> str:
        return f"tb-{self.tag}-"

    @property
    def link_prefix(self) -> str:
        return f"tb{self.tag}"

    # ---- commands -----------------------------------------------------------------------
    def bridge_commands(self) -> list[list[str]]:
        cidr = f"{self.bridge_address}/{BLOCK_PREFIX}"
        return [
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", cidr, "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ]

    def org_commands(self, org: str, org_index: int) -> list[list[str]]:
        ns, host, inner = self.namespace(org), self.host_veth(org_index), self.ns_veth(org_index)
        return [
            ["ip", "netns", "add", ns],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "link", "add", host, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", ns],
            ["ip", "link", "set", host, "master", self.bridge],
            ["ip", "link", "set", host, "up"],
            ["ip", "-n", ns, "link", "set", inner, "up"],
        ]

    def address_command(self, org: str, org_index: int, address: str) -> list[str]:
        return ["ip", "-n", self.namespace(org), "addr", "replace", f"{address}/{BLOCK_PREFIX}",
                "dev", self.ns_veth(org_index)]

    def exec_prefix(self, org: str) -> list[str]:
        """Run a command inside an organization's namespace (`ip netns exec` execs: same pid)."""
        return ["ip", "netns", "exec", self.namespace(org)]

    def partition_routes(self, groups: list[list[str]], orgs: dict[str, int]) -> list[tuple[str, str]]:
        """(namespace, prefix) blackhole routes: each org drops what it sends to other groups."""
        seen: dict[str, int] = {}
        for g, group in enumerate(groups):
            for org in group:
                if org not in orgs:
                    raise BackendError(f"partition names unknown organization {org!r}; organizations: {', '.join(orgs)}")
                if org in seen:
                    raise BackendError(f"organization {org!r} is in two partition groups ({seen[org] + 1} and {g + 1})")
                seen[org] = g
        routes = []
        for org, g in seen.items():
            for other, h in seen.items():
                if g != h:
                    routes.append((self.namespace(org), self.org_prefix(orgs[other])))
        return routes

    @staticmethod
    def blackhole_command(namespace: str, prefix: str, action: str = "replace") -> list[str]:
        return ["ip", "-n", namespace, "route", action, "blackhole", prefix]

    def netem_command(self, org: str, org_index: int, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> list[str]:
        cmd = ["tc", "-n", self.namespace(org), "qdisc", "replace", "dev", self.ns_veth(org_index), "root", "netem",
               "delay", f"{delay_ms}ms"]
        if jitter_ms:
            cmd.append(f"{jitter_ms}ms")
        if loss_pct:
            cmd += ["loss", f"{loss_pct:g}%"]
        return cmd

    def nfqueue_rule(self, org_index: int, queue: int, action: str = "-A") -> list[str]:
        """iptables rule (run inside the namespace) handing every packet the org sends to a queue."""
        return ["iptables", "-w", action, "OUTPUT", "-o", self.ns_veth(org_index), "-j", "NFQUEUE",
                "--queue-num", str(queue), "--queue-bypass"]
