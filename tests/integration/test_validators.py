"""Validator votes on live networks, GoQuorum QBFT and IBFT (istanbul_propose) and geth Clique
(clique_propose): a member node voted in becomes a validator and seals (proposes) blocks; voted out
again. Each network is checked for full peering and agreement on every height first (the
conformance checks GoQuorum IBFT runs; QBFT and Clique also run the rest of them in test_network)."""

from __future__ import annotations

import time

import pytest

from testbed import validators
from testbed.pytest_plugin import consortium_network

from . import conformance
from .conftest import NETWORKS, spec_with

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["four-orgs.yaml", "four-orgs-ibft.yaml", "four-orgs-clique.yaml"],
                ids=["goquorum-qbft", "goquorum-ibft", "geth-clique"])
def five_nodes(testbed_home, request):
    spec = spec_with(NETWORKS / request.param, name="it-votes", port_base=24200)
    data = spec.model_dump()
    data["organizations"][0]["members"] = 1
    with consortium_network(type(spec).model_validate(data), progress=print) as network:
        yield network


def test_every_node_peered_and_agreeing_on_every_height(five_nodes):
    conformance.check_fully_peered_same_validators_and_agreeing(five_nodes)


def test_member_voted_in_signs_then_voted_out(five_nodes):
    net = five_nodes
    member = next(n for n in net.nodes if n.role == "member")
    before = validators.view(net)
    assert before.agreed and len(before.validators) == 4
    assert member.address.lower() not in before.validators

    after = validators.change(net, member.name, add=True, timeout=120)
    assert after.agreed and len(after.validators) == 5 and member.address.lower() in after.validators
    assert all(v == after.validators for v in validators.view(net).per_node.values())

    # the new signer seals: within a few rounds of 5 signers a block carries its signature
    first = net.agreement().common_height + 1
    deadline = time.monotonic() + 60
    sealed = {}
    while time.monotonic() < deadline:
        head = net.agreement().common_height
        sealed = validators.block_signers(net, first, head) if head >= first else {}
        if member.address.lower() in sealed.values():
            break
        time.sleep(1)
    assert member.address.lower() in sealed.values(), f"blocks {first}..: signers {set(sealed.values())}"

    removed = validators.change(net, member.name, add=False, timeout=120)
    assert removed.agreed and len(removed.validators) == 4 and member.address.lower() not in removed.validators
    assert net.agreement(full=True, settle=15).agreed


def test_bad_votes_are_refused(five_nodes):
    from testbed.errors import StateError

    validator = next(n for n in five_nodes.nodes if n.role == "validator")
    with pytest.raises(StateError, match="already a validator"):
        validators.change(five_nodes, validator.name, add=True)
    member = next(n for n in five_nodes.nodes if n.role == "member")
    with pytest.raises(StateError, match="is not a validator"):
        validators.change(five_nodes, member.name, add=False)
