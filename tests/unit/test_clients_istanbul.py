"""QBFT / IBFT extraData, genesis for every client/engine pair, and the client/engine switch."""

import itertools
import json

import pytest
import rlp
from pydantic import ValidationError

from testbed.clients import get_client
from testbed.clients.base import NodePlan, NodePorts
from testbed.clients.istanbul import (
    BFT_MIX_HASH,
    decode_bft_validators,
    decode_istanbul_validators,
    ibft2_extra_data,
    istanbul_extra_data,
    qbft_extra_data,
)
from testbed.keys import KeyPair
from testbed.spec.network import NetworkSpec, engines_by_client

# Published vector (Besu QBFT documentation; shared FACTS): these four validators, in this order.
BESU_DOC_VALIDATORS = [
    "0x4592c8e45706cc08b8f44b11e43cba0cfc5892cb",
    "0x06e23768a0f59cf365e18c2e0c89e151bcdedc70",
    "0xc5327f96ee02d7bcbc1bf1236b8c15148971e1de",
    "0xab5e7f4061c605820d3744227eed91ff8e2c8908",
]
BESU_DOC_QBFT_EXTRA = (
    "0xf87aa0" + "0" * 64
    + "f854944592c8e45706cc08b8f44b11e43cba0cfc5892cb9406e23768a0f59cf365e18c2e0c89e151bcdedc70"
    + "94c5327f96ee02d7bcbc1bf1236b8c15148971e1de94ab5e7f4061c605820d3744227eed91ff8e2c8908c080c0"
)

PAIRS = [(client, engine) for client, engines in engines_by_client().items() for engine in engines]
ALL_CLIENTS = list(engines_by_client())
ALL_ENGINES = sorted({e for es in engines_by_client().values() for e in es})
INVALID_PAIRS = [(c, e) for c, e in itertools.product(ALL_CLIENTS, ALL_ENGINES) if (c, e) not in PAIRS]


def random_addresses(n: int) -> list[str]:
    return [KeyPair.generate().address for _ in range(n)]


def spec_for(client: str, engine: str, **consensus) -> NetworkSpec:
    return NetworkSpec.model_validate({
        "name": "t", "chain_id": 5151, "client": client,
        "consensus": {"engine": engine, "block_period": 1, "epoch": 500, "gas_limit": 40_000_000,
                      "request_timeout": 7, **consensus},
        "organizations": [{"name": "a", "validators": 2, "members": 1}, {"name": "b", "validators": 2}],
    })


def plan(name: str, index: int, role: str = "validator") -> NodePlan:
    return NodePlan(name=name, org=name.split("-")[0], role=role, index=index, host="127.0.0.1",
                    ports=NodePorts.for_index(26000, index), key=KeyPair.generate())


# ---- extraData ---------------------------------------------------------------------------------

def test_besu_qbft_extra_data_matches_published_vector():
    assert qbft_extra_data(BESU_DOC_VALIDATORS) == BESU_DOC_QBFT_EXTRA


def test_qbft_extra_data_accepts_checksummed_and_lower_case_alike():
    upper = [a.upper().replace("0X", "0x") for a in BESU_DOC_VALIDATORS]
    assert qbft_extra_data(upper) == BESU_DOC_QBFT_EXTRA


@pytest.mark.parametrize("count", [1, 4, 7])
def test_qbft_extra_data_round_trips_through_rlp(count):
    validators = random_addresses(count)
    vanity, listed, vote, round_, seals = rlp.decode(bytes.fromhex(qbft_extra_data(validators)[2:]))
    assert vanity == bytes(32)
    assert [b.hex() for b in listed] == [v.lower()[2:] for v in validators]
    assert vote == [] and round_ == b"" and seals == []
    assert decode_bft_validators(qbft_extra_data(validators)) == validators


@pytest.mark.parametrize("count", [1, 4, 7])
def test_ibft2_extra_data_round_trips_through_rlp(count):
    validators = random_addresses(count)
    vanity, listed, vote, round_, seals = rlp.decode(bytes.fromhex(ibft2_extra_data(validators)[2:]))
    assert vanity == bytes(32)
    assert [b.hex() for b in listed] == [v.lower()[2:] for v in validators]
    assert vote == b""  # no vote: empty bytes (QBFT uses an empty list)
    assert round_ == bytes(4)  # IBFT 2.0 rounds are 4 bytes
    assert seals == []
    assert decode_bft_validators(ibft2_extra_data(validators)) == validators


def test_ibft2_and_qbft_differ_only_in_vote_and_round():
    validators = random_addresses(4)
    qbft = rlp.decode(bytes.fromhex(qbft_extra_data(validators)[2:]))
    ibft2 = rlp.decode(bytes.fromhex(ibft2_extra_data(validators)[2:]))
    assert qbft[:2] == ibft2[:2] and qbft[4] == ibft2[4]
    assert qbft[2:4] != ibft2[2:4]


def test_goquorum_ibft_extra_data_is_raw_vanity_then_rlp():
    validators = random_addresses(4)
    raw = bytes.fromhex(istanbul_extra_data(validators)[2:])
    assert raw[:32] == bytes(32)
    listed, seal, committed = rlp.decode(raw[32:])
    assert [b.hex() for b in listed] == [v.lower()[2:] for v in validators]
    assert seal == b"" and committed == []
    assert decode_istanbul_validators(istanbul_extra_data(validators)) == validators
    with pytest.raises((ValueError, rlp.exceptions.DecodingError)):
        decode_bft_validators(istanbul_extra_data(validators))


@pytest.mark.parametrize("encode", [qbft_extra_data, ibft2_extra_data, istanbul_extra_data])
def test_extra_data_rejects_bad_input(encode):
    with pytest.raises(ValueError):
        encode([])
    with pytest.raises(ValueError):
        encode(["0x1234"])


# ---- genesis for every client/engine pair -----------------------------------------------------

def validators_in(genesis: dict, client: str, engine: str) -> list[str]:
    extra = genesis["extraData"]
    if engine == "clique":
        raw = bytes.fromhex(extra[2:])
        body = raw[32:-65]
        return ["0x" + body[i:i + 20].hex() for i in range(0, len(body), 20)]
    if client == "goquorum" and engine == "ibft":
        return decode_istanbul_validators(extra)
    return decode_bft_validators(extra)


@pytest.mark.parametrize("client,engine", PAIRS)
def test_genesis_parses_and_contains_the_validators(client, engine):
    spec = spec_for(client, engine)
    validators = random_addresses(4)
    alloc = {KeyPair.generate().address: 7 * 10**18}
    genesis = json.loads(json.dumps(get_client(client).genesis(spec, validators, alloc)))
    assert genesis["config"]["chainId"] == 5151
    assert int(genesis["gasLimit"], 16) == 40_000_000
    assert int(genesis["difficulty"], 16) == 1
    assert {v.lower() for v in validators_in(genesis, client, engine)} == {v.lower() for v in validators}
    (funded,) = alloc
    assert genesis["alloc"][funded.lower()[2:]]["balance"] == hex(7 * 10**18)
    if engine != "clique":
        assert genesis["mixHash"] == BFT_MIX_HASH


@pytest.mark.parametrize("engine", engines_by_client()["goquorum"])
def test_goquorum_genesis_engine_section(engine):
    genesis = get_client("goquorum").genesis(spec_for("goquorum", engine), random_addresses(4), {})
    config = genesis["config"]
    section = config["qbft" if engine == "qbft" else "ibft"]
    assert section["blockperiodseconds"] == 1 and section["epochlength"] == 500
    assert section["requesttimeoutseconds"] == 7
    assert section["policy"] == 0 and section["ceil2Nby3Block"] == 0
    assert config["isQuorum"] is True
    assert "londonBlock" not in config  # GoQuorum runs gas-free legacy transactions


@pytest.mark.parametrize("engine", ["qbft", "ibft2"])
def test_besu_genesis_bft_section(engine):
    config = get_client("besu").genesis(spec_for("besu", engine), random_addresses(4), {})["config"]
    assert config[engine] == {"blockperiodseconds": 1, "epochlength": 500, "requesttimeoutseconds": 7}
    assert config["zeroBaseFee"] is True and config["londonBlock"] == 0
    other = {"qbft": "ibft2", "ibft2": "qbft"}[engine]
    assert other not in config and "clique" not in config


@pytest.mark.parametrize("client,engine", PAIRS)
def test_every_engine_refuses_block_period_zero_in_the_spec(client, engine):
    """BFT engines need a period; a Clique period of 0 seals only with transactions, so an idle
    network would never get ready: the spec refuses 0, naming the field."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="block_period"):
        spec_for(client, engine, block_period=0)


# ---- the client/engine switch -----------------------------------------------------------------

@pytest.mark.parametrize("client", ALL_CLIENTS)
def test_registry_names_each_adapter_by_its_name(client):
    assert get_client(client).name == client


@pytest.mark.parametrize("client,engine", INVALID_PAIRS)
def test_invalid_pairs_are_rejected_with_the_valid_pairs(client, engine):
    with pytest.raises(ValidationError) as info:
        spec_for(client, engine)
    message = str(info.value)
    assert f"{engine!r} is not available on client {client!r}" in message
    for valid_client, valid_engine in PAIRS:
        assert f"{valid_client}/{valid_engine}" in message


def test_there_are_invalid_pairs_to_reject():
    assert ("geth", "qbft") in INVALID_PAIRS and ("goquorum", "clique") in INVALID_PAIRS


@pytest.mark.parametrize("client,engine,listing,proposing", [
    ("goquorum", "qbft", "istanbul_getValidators", "istanbul_propose"),
    ("goquorum", "ibft", "istanbul_getValidators", "istanbul_propose"),
    ("besu", "qbft", "qbft_getValidatorsByBlockNumber", "qbft_proposeValidatorVote"),
    ("besu", "ibft2", "ibft_getValidatorsByBlockNumber", "ibft_proposeValidatorVote"),
    ("besu", "clique", "clique_getSigners", "clique_propose"),
])
def test_validator_rpc_names(client, engine, listing, proposing):
    adapter = get_client(client)
    rpc = adapter.validator_rpc(engine)
    assert (rpc.list_method, rpc.propose_method) == (listing, proposing)
    # the vote namespace is served where the harness calls it: the IPC socket (GoQuorum; it serves
    # every namespace there) or, for Besu, its RPC
    assert (listing.split("_")[0] in adapter.rpc_apis(engine)) == (not adapter.admin_over_ipc)
    assert "personal" not in adapter.rpc_apis(engine)
