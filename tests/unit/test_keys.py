"""Keys: address and enode derivation, files written 0600, nothing secret in repr."""

import os
import stat

import pytest
from eth_account import Account

from testbed.keys import KeyPair, NetworkKeys

# A well-known test key (Hardhat/Anvil account 0): address and public key are published widely.
KNOWN_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KNOWN_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_address_matches_eth_account():
    pair = KeyPair(KNOWN_KEY)
    assert pair.address == KNOWN_ADDRESS == Account.from_key(bytes.fromhex(KNOWN_KEY)).address


def test_public_key_is_enode_id():
    pair = KeyPair(KNOWN_KEY)
    assert len(pair.public_key) == 128
    # the address is the last 20 bytes of keccak(pubkey)
    from eth_utils import keccak, to_checksum_address

    assert to_checksum_address(keccak(bytes.fromhex(pair.public_key))[-20:]) == KNOWN_ADDRESS


def test_generated_keys_are_distinct_and_hidden_from_repr():
    pairs = [KeyPair.generate() for _ in range(20)]
    assert len({p.private_key for p in pairs}) == 20
    assert pairs[0].private_key not in repr(pairs[0])


def test_save_load_roundtrip_with_mode_0600(tmp_path):
    keys = NetworkKeys.generate({"a": ["a-v1"], "b": ["b-v1", "b-m1"]}, {"a": 2, "b": 3})
    keys.save(tmp_path / "keys")
    files = [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]
    assert len(files) == 3 + 2 + 1
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    loaded = NetworkKeys.load(tmp_path / "keys")
    assert {n: p.address for n, p in loaded.nodes.items()} == {n: p.address for n, p in keys.nodes.items()}
    assert [p.address for p in loaded.accounts["b"]] == [p.address for p in keys.accounts["b"]]
    assert loaded.operator.address == keys.operator.address
    assert len(keys.funded_addresses()) == 1 + 2 + 3


def test_an_organizations_view_loads_only_its_own_account_keys(tmp_path):
    """What a Solver or consumer process of one org loads: its accounts; nodes by public key only;
    no operator; another org's keys cannot be asked for, a node key cannot sign."""
    from testbed.errors import StateError


    full = NetworkKeys.generate({"a": ["a-v1"], "b": ["b-v1"]}, {"a": 6, "b": 6})
    full.save(tmp_path)
    public = {name: pair.public_key for name, pair in full.nodes.items()}
    view = NetworkKeys.load_org(tmp_path, "a", public)
    assert [p.private_key for p in view.accounts["a"]] == [p.private_key for p in full.accounts["a"]]
    assert set(view.accounts) == {"a"} and view.operator is None
    assert {n: p.address for n, p in view.nodes.items()} == {n: p.address for n, p in full.nodes.items()}
    assert all(p.private_key is None for p in view.nodes.values())
    with pytest.raises(StateError, match="no organization 'b'"):
        view.of("b")
    with pytest.raises(StateError, match="public half"):
        view.nodes["a-v1"].account()
    with pytest.raises(StateError, match="not a 64-byte public key"):
        KeyPair.public_only("00" * 20)
