"""The committed artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import json
import shutil

import pytest

from testbed.cti import artifacts as art
from testbed.cti import compile as comp

PUSH0 = 0x5F


def _opcodes(code: bytes):
    """The opcodes of runtime code, without solc's CBOR metadata trailer (data, not code: its
    last two bytes give its length)."""
    code = code[: len(code) - 2 - int.from_bytes(code[-2:], "big")]
    i = 0
    while i < len(code):
        op = code[i]
        yield op
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)


@pytest.fixture(scope="module")
def fresh() -> dict[str, dict]:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed")
    return comp.compile_contracts()


def test_committed_artifacts_match_a_fresh_compile(fresh):
    assert sorted(fresh) == sorted(art.CONTRACT_NAMES)
    assert comp.stale_artifacts(fresh) == [], "run: python -m testbed.cti.compile"


def test_stale_artifacts_are_detected(fresh, tmp_path):
    comp.write_artifacts(fresh, tmp_path)
    assert comp.stale_artifacts(fresh, tmp_path) == []
    tampered = json.loads((tmp_path / "Tasks.json").read_text())
    tampered["bytecode"] = tampered["bytecode"][:-2] + "00"
    (tmp_path / "Tasks.json").write_text(comp.render(tampered))
    assert comp.stale_artifacts(fresh, tmp_path) == ["Tasks"]


def test_compile_is_deterministic(fresh):
    again = comp.compile_contracts()
    assert {n: comp.render(a) for n, a in again.items()} == {n: comp.render(a) for n, a in fresh.items()}


@pytest.mark.parametrize("name", art.CONTRACT_NAMES)
def test_artifact_is_london_code_within_the_size_limit(name):
    a = json.loads((art.ARTIFACT_DIR / f"{name}.json").read_text())
    assert a["compiler"]["settings"]["evmVersion"] == "london"
    assert a["compiler"]["version"].startswith("0.8.28+")
    assert a["compiler"]["settings"]["optimizer"]["enabled"] is True
    runtime = bytes.fromhex(a["deployedBytecode"][2:])
    assert 0 < len(runtime) <= 24576  # EIP-170
    assert PUSH0 not in set(_opcodes(runtime)), "PUSH0 is Shanghai: the Clique chain would reject it"
    assert a["sourceHash"] == json.loads((art.ARTIFACT_DIR / "Membership.json").read_text())["sourceHash"]


def test_error_table_covers_every_custom_error():
    names = {e.name for e in art.error_table().values()}
    assert {"NotMember", "MissingRole", "WrongOrg", "Underpaid", "BadState", "AlreadyLiked"} <= names
