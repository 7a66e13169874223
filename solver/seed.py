"""Seeding: generated sample MISP events in an org's intelligence store, published on-chain.

    events = [sample_event(rng, "acme-cert", i) for i in range(3)]
    tokens = publish_events(cti, DirectoryStore(dir), events, solvers=[solver_address])
    tokens = seed_network(net, "acme-cert", count=3)   # the same on a running testbed network

Indicators are generated, never downloaded: domains under common TLDs built from word
lists, IPv4 addresses from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24), file hashes of random bytes, URLs and file names. The listing's content
hash is keccak256 of the stored JSON.
"""

from __future__ import annotations

import hashlib
import random
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from eth_utils import keccak
from pymisp import MISPEvent, MISPObject

from solver.intel import DirectoryStore

WORDS = ("cloud", "secure", "update", "login", "mail", "cdn", "portal", "sync", "auth", "office", "pay",
         "verify", "account", "drive", "share", "support", "api", "micro", "soft", "data", "net", "track")
TLDS = ("com", "net", "org", "info", "xyz", "top", "online", "site", "biz", "ru")
NETS = ("192.0.2", "198.51.100", "203.0.113")
THREATS = ("APT-{n} phishing infrastructure", "Ransomware {n} C2 servers", "Credential stealer campaign {n}",
           "Botnet {n} loaders", "Watering-hole compromise {n}", "Supply-chain implant {n}")
FILE_NAMES = ("invoice.pdf.exe", "update.dll", "setup.msi", "payload.bin", "report.docm", "loader.js")


def _domain(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}-{rng.choice(WORDS)}{rng.randint(1, 99)}.{rng.choice(TLDS)}"


def sample_event(rng: random.Random, org: str, index: int, *, indicators: int = 12) -> MISPEvent:
    """A realistic-looking MISP event: network and file indicators (attributes and MISP objects),
    TLP tag, threat level."""
    event = MISPEvent()
    event.uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    event.info = rng.choice(THREATS).format(n=rng.randint(10, 99)) + f" (shared by {org}, #{index})"
    event.date = date(2024, 1, 1) + timedelta(days=rng.randint(0, 700))
    event.threat_level_id = rng.randint(1, 3)
    event.analysis = rng.randint(0, 2)
    event.distribution = 1
    event.add_tag(rng.choice(("tlp:amber", "tlp:green", "tlp:amber+strict")))
    for i in range(indicators):  # standalone attributes and MISP objects (file, domain-ip, url)
        kind = i % 6
        if kind == 0:
            event.add_attribute("domain", _domain(rng), comment="C2 domain")
        elif kind == 1:
            event.add_attribute("ip-dst", f"{rng.choice(NETS)}.{rng.randint(1, 254)}", comment="C2 address")
        elif kind == 2:
            url = MISPObject("url")
            url.add_attribute("url", value=f"https://{_domain(rng)}/{rng.choice(WORDS)}/{rng.randint(100, 999)}.php")
            event.add_object(url)
        elif kind == 3:
            blob = rng.randbytes(64)
            file = MISPObject("file")
            file.add_attribute("filename", value=rng.choice(FILE_NAMES))
            file.add_attribute("sha256", value=hashlib.sha256(blob).hexdigest())
            file.add_attribute("md5", value=hashlib.md5(blob).hexdigest())  # noqa: S324
            file.add_attribute("size-in-bytes", value=len(blob))
            event.add_object(file)
        elif kind == 4:
            pair = MISPObject("domain-ip")
            pair.add_attribute("domain", value=_domain(rng))
            pair.add_attribute("ip", value=f"{rng.choice(NETS)}.{rng.randint(1, 254)}")
            event.add_object(pair)
        else:
            blob = rng.randbytes(64)
            event.add_attribute("sha256", hashlib.sha256(blob).hexdigest(), category="Payload delivery")
    return event


@dataclass(frozen=True)
class Published:
    token_id: int
    misp_uuid: str
    title: str


def publish_events(cti, store: DirectoryStore, events: Sequence[MISPEvent], *, solvers: Sequence[str],
                   price_wei: int = 10**15, supply: int = 1000) -> list[Published]:
    """Write each event to the store, then list it on-chain with `cti` (a publisher's CtiClient)."""
    out = []
    for event in events:
        path = store.put(event)
        title = event.info[:120]
        token = cti.publish(str(event.uuid), title, keccak(path.read_bytes()), price_wei, supply,
                            solvers=list(solvers)).result
        out.append(Published(token, str(event.uuid), title))
    return out


def seed_network(net, org: str, count: int = 3, *, seed: int | None = None, price_wei: int = 10**15,
                 supply: int = 1000, progress=lambda _: None) -> list[Published]:
    """Sample events for `org` in its intelligence store, published by its publisher account with
    its solver account(s) authorized. Returns the listings."""
    from solver.manage import intel_dir, role_accounts
    from testbed.chain.wait import wait_for_block_on_nodes
    from testbed.contracts import deployment_of
    from testbed.cti import CtiClient
    from testbed.cti.deploy import connect

    accounts = role_accounts(net, org)
    cti = CtiClient(connect(net.org_rpc_urls(org)), deployment_of(net), accounts.publisher.private_key)
    rng = random.Random(seed if seed is not None else f"{net.name}:{org}:{cti.listing_count()}")
    events = [sample_event(rng, org, i) for i in range(count)]
    published = publish_events(cti, DirectoryStore(intel_dir(net, org)), events, solvers=[accounts.solver.address],
                               price_wei=price_wei, supply=supply)
    # listed for the whole consortium: every running node has the block (a buyer's node may lag one)
    wait_for_block_on_nodes(net, cti.w3.eth.block_number)
    progress(f"{org}: published {len(published)} CTI (tokens {', '.join(str(p.token_id) for p in published)})")
    return published
