"""The netns backend's pure parts: address plan, interface names, commands, nfqueue messages."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from testbed.backends import get_backend, netns, nfqueue_delay
from testbed.backends.local import LocalBackend
from testbed.backends.netns_plan import (BLOCKS, IFNAMSIZ, MAX_ORGS, RANGE, NetnsPlan, block_of, choose_block,
                                         preferred_block)
from testbed.errors import BackendError, NotSupportedError

ORGS = {"acme-cert": 0, "globex-soc": 1, "initech-isac": 2, "umbrella-csirt": 3}


def test_block_zero_matches_the_documented_plan():
    plan = NetnsPlan("n", 0)
    assert str(plan.subnet) == "198.18.0.0/19"
    assert plan.bridge_address == "198.18.0.1"
    assert plan.node_address(0, 0) == "198.18.1.10"
    assert plan.node_address(3, 2) == "198.18.4.12"
    assert plan.org_prefix(3) == "198.18.4.0/24"


@pytest.mark.parametrize("block", range(BLOCKS))
def test_every_address_stays_inside_the_benchmarking_range_and_its_block(block):
    plan = NetnsPlan("n", block)
    assert plan.subnet.subnet_of(RANGE)
    addresses = [plan.bridge_address] + [plan.node_address(o, n) for o in (0, MAX_ORGS - 1) for n in (0, 63)]
    for address in addresses:
        assert ipaddress.ip_address(address) in plan.subnet
        assert block_of(address) == block
    for org in (0, MAX_ORGS - 1):
        assert ipaddress.ip_network(plan.org_prefix(org)).subnet_of(plan.subnet)
        assert ipaddress.ip_address(plan.node_address(org, 5)) in ipaddress.ip_network(plan.org_prefix(org))
    assert ipaddress.ip_address(plan.bridge_address) not in ipaddress.ip_network(plan.org_prefix(0))


def test_blocks_do_not_overlap():
    subnets = [NetnsPlan("n", b).subnet for b in range(BLOCKS)]
    assert len({s for s in subnets}) == BLOCKS
    assert sum(s.num_addresses for s in subnets) == RANGE.num_addresses


def test_too_many_organizations_or_nodes_is_a_clear_error():
    plan = NetnsPlan("n", 0)
    with pytest.raises(BackendError, match="at most 31 organizations"):
        plan.node_address(MAX_ORGS, 0)
    with pytest.raises(BackendError, match="nodes per organization"):
        plan.node_address(0, 64)


def test_block_of_outside_the_range_is_none():
    assert block_of("127.0.0.1") is None
    assert block_of("198.20.0.1") is None
    assert block_of("198.19.255.254") == BLOCKS - 1


def test_choose_block_prefers_the_hash_and_skips_used_blocks():
    first = preferred_block("four-orgs-netns")
    assert choose_block("four-orgs-netns", set()) == first
    assert choose_block("four-orgs-netns", {first}) == (first + 1) % BLOCKS
    with pytest.raises(BackendError, match="in use"):
        choose_block("x", set(range(BLOCKS)))


def test_interface_names_are_short_and_unique_per_network():
    a, b = NetnsPlan("four-orgs-netns", 0), NetnsPlan("it-four-orgs-netns", 0)
    for plan in (a, b):
        names = [plan.bridge] + [plan.host_veth(i) for i in range(MAX_ORGS)] + [plan.ns_veth(i) for i in range(MAX_ORGS)]
        assert all(len(n) <= IFNAMSIZ for n in names), names
        assert len(set(names)) == len(names)
        assert all(n.startswith(plan.link_prefix) for n in names)
    assert a.tag != b.tag
    assert not a.bridge.startswith(b.link_prefix) and not a.namespace("x").startswith(b.namespace_prefix)


def test_setup_commands_bring_up_lo_and_join_the_bridge():
    plan = NetnsPlan("n", 0)
    cmds = plan.org_commands("acme-cert", 0)
    ns = plan.namespace("acme-cert")
    assert cmds[0] == ["ip", "netns", "add", ns]
    assert ["ip", "-n", ns, "link", "set", "lo", "up"] in cmds
    assert ["ip", "link", "set", plan.ns_veth(0), "netns", ns] in cmds
    assert ["ip", "link", "set", plan.host_veth(0), "master", plan.bridge] in cmds
    assert plan.bridge_commands()[1] == ["ip", "addr", "add", "198.18.0.1/19", "dev", plan.bridge]
    assert plan.address_command("acme-cert", 0, "198.18.1.10") == [
        "ip", "-n", ns, "addr", "replace", "198.18.1.10/19", "dev", plan.ns_veth(0)]
    assert plan.exec_prefix("acme-cert") == ["ip", "netns", "exec", ns]


def test_partition_two_by_two_blackholes_each_side_towards_the_other():
    plan = NetnsPlan("n", 0)
    routes = plan.partition_routes([["acme-cert", "globex-soc"], ["initech-isac", "umbrella-csirt"]], ORGS)
    assert len(routes) == 8
    assert (plan.namespace("acme-cert"), "198.18.3.0/24") in routes
    assert (plan.namespace("umbrella-csirt"), "198.18.2.0/24") in routes
    assert (plan.namespace("acme-cert"), "198.18.2.0/24") not in routes  # same group
    assert all(not prefix.startswith("198.18.0.") for _, prefix in routes)  # the harness keeps access


def test_partition_leaves_unnamed_orgs_alone_and_rejects_bad_groups():
    plan = NetnsPlan("n", 0)
    routes = plan.partition_routes([["acme-cert"], ["globex-soc"]], ORGS)
    assert {ns for ns, _ in routes} == {plan.namespace("acme-cert"), plan.namespace("globex-soc")}
    with pytest.raises(BackendError, match="unknown organization 'nope'"):
        plan.partition_routes([["nope"], ["acme-cert"]], ORGS)
    with pytest.raises(BackendError, match="in two partition groups"):
        plan.partition_routes([["acme-cert"], ["acme-cert", "globex-soc"]], ORGS)


def test_netem_and_nfqueue_commands():
    plan = NetnsPlan("n", 0)
    ns, dev = plan.namespace("acme-cert"), plan.ns_veth(0)
    assert plan.netem_command("acme-cert", 0, 200) == ["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root",
                                                       "netem", "delay", "200ms"]
    assert plan.netem_command("acme-cert", 0, 200, 20, 1.5)[-4:] == ["200ms", "20ms", "loss", "1.5%"]
    assert plan.nfqueue_rule(0, 1) == ["iptables", "-w", "-A", "OUTPUT", "-o", dev, "-j", "NFQUEUE",
                                       "--queue-num", "1", "--queue-bypass"]
    assert plan.blackhole_command(ns, "198.18.3.0/24", "del") == ["ip", "-n", ns, "route", "del", "blackhole", "198.18.3.0/24"]


def test_nfqueue_packet_ids_and_verdicts_roundtrip():
    # a crafted NFQNL_MSG_PACKET carrying NFQA_PACKET_HDR(id=0x01020304) and one unrelated attribute
    hdr = struct.pack("!IHB", 0x01020304, 0x0800, 3) + b"\0"
    attrs = nfqueue_delay._attr(nfqueue_delay.NFQA_PACKET_HDR, hdr) + nfqueue_delay._attr(9, b"\x01\x02\x03")
    msg = nfqueue_delay._message(nfqueue_delay.NFQNL_MSG_PACKET, 5, attrs)
    assert nfqueue_delay.packet_ids(msg + msg) == [0x01020304, 0x01020304]
    verdict = nfqueue_delay.verdict_message(5, 42, nfqueue_delay.NF_ACCEPT)
    length, kind = struct.unpack_from("=IH", verdict)
    assert length == len(verdict) and kind == (3 << 8) | 1
    assert struct.unpack_from("!II", verdict, 16 + 4 + 4) == (1, 42)
    error = struct.pack("=IHHIIi", 20, nfqueue_delay.NLMSG_ERROR, 0, 0, 0, -1)
    with pytest.raises(OSError):
        nfqueue_delay.packet_ids(error)


def test_netns_needs_root_with_a_one_line_message(monkeypatch, tmp_path):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns, "_root_addresses", lambda: [])
    backend = get_backend("netns", network="n", state_dir=tmp_path)
    with pytest.raises(BackendError, match="needs root") as info:
        backend.prepare(["acme-cert"])
    assert "\n" not in str(info.value)


def test_netns_teardown_with_nothing_created_needs_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns, "_root_addresses", lambda: [])
    backend = netns.NetnsBackend(network="never-prepared-xyz", state_dir=tmp_path)
    backend.teardown()  # no record, no namespace or link with its names: a no-op, no root needed


def test_netns_backend_reuses_its_recorded_block_and_probes_otherwise(monkeypatch, tmp_path):
    (tmp_path / netns.STATE_FILE).write_text('{"block": 7, "orgs": {"acme-cert": 0}}')
    assert netns.NetnsBackend(network="n", state_dir=tmp_path).host_for(0, 0) == "198.18.225.10"
    first = preferred_block("m")
    other = str(NetnsPlan("m", first).subnet.network_address + 1)
    monkeypatch.setattr(netns, "_root_addresses", lambda: [("eth0", "10.0.0.2"), ("tbotherbr", other)])
    backend = netns.NetnsBackend(network="m", state_dir=tmp_path / "fresh")
    assert backend.plan.block == (first + 1) % BLOCKS


def test_local_backend_partition_names_the_netns_backend():
    with pytest.raises(NotSupportedError) as info:
        LocalBackend(network="n").partition([["a"], ["b"]])
    assert "cannot partition" in info.value.message and "backend: netns" in info.value.hint
    with pytest.raises(NotSupportedError, match="delay"):
        LocalBackend(network="n").delay("a", 200)


def test_registry_lists_netns():
    with pytest.raises(Exception, match="local, netns"):
        get_backend("k8s", network="n", state_dir=None)
