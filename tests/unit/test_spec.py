"""Network spec validation: good files load, bad files give one line naming file, line, key and fix."""

from pathlib import Path

import pytest

from testbed.errors import SpecError
from testbed.spec import load_network_spec
from testbed.spec.network import NetworkSpec, engines_by_client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios" / "networks").glob("*.yaml"))

GOOD = """\
name: t
organizations:
  - name: a
  - name: b
    validators: 2
    members: 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_specs_load(path):
    spec = load_network_spec(path)
    assert spec.validator_count >= 1
    assert spec.consensus.engine in engines_by_client()[spec.client]


def test_shipped_default_is_four_orgs_one_validator_each():
    spec = load_network_spec(ROOT / "scenarios" / "networks" / "four-orgs.yaml")
    assert [o.validators for o in spec.organizations] == [1, 1, 1, 1]
    sixteen = load_network_spec(ROOT / "scenarios" / "networks" / "sixteen-orgs.yaml")
    assert len(sixteen.organizations) == 16


def test_defaults_fill_in(tmp_path):
    spec = load_network_spec(write(tmp_path, GOOD))
    assert spec.client == "goquorum" and spec.consensus.engine == "qbft" and spec.backend == "local"
    assert spec.organizations[1].node_count == 3
    assert spec.validator_count == 3


BAD = [
    # (yaml, expected line, substrings that must appear)
    ("name: t\norganizations:\n  - name: a\n    validatorz: 1\n", 4, ["organizations.0.validatorz", "unknown key", "allowed keys:", "validators"]),
    ("name: t\nclient: parity\norganizations:\n  - name: a\n", 2, ["client", "'parity'", "geth", "goquorum", "besu"]),
    ("name: t\nconsensus:\n  engine: pow\norganizations:\n  - name: a\n", 3, ["consensus.engine", "clique", "qbft"]),
    ("name: t\nbackend: k8s\norganizations:\n  - name: a\n", 2, ["backend", "local", "netns"]),
    ("name: t\norganizations:\n  - name: a\n  - name: a\n", 2, ["duplicate organization name 'a'"]),
    ("name: t\norganizations:\n  - name: a\n    validators: 0\n    members: 1\n", 2, ["zero validators"]),
    ("name: t\norganizations:\n  - name: a\n    validators: 0\n", 2, ["has no nodes"]),
    ("name: t\nclient: geth\nconsensus: {engine: qbft}\norganizations:\n  - name: a\n", 1, ["valid client/engine pairs", "goquorum/qbft"]),
    ("name: t\norganizations: []\n", 2, ["organizations"]),
    ("name: Bad Name\norganizations:\n  - name: a\n", 1, ["name", "pattern"]),
    ("name: t\norganizations:\n  - name: a\n    accounts: -1\n", 4, ["organizations.0.accounts", "set accounts: 6 or more"]),
    ("name: t\norganizations:\n  - name: a\n    accounts: 5\n", 4, ["organizations.0.accounts", "steps, funder, publisher, consumer, solver"]),
    ("name: t\norganizations:\n  - name: [unclosed\n", 4, ["invalid YAML"]),
    ("- just\n- a list\n", 1, ["expected a mapping"]),
    ("", 1, ["empty"]),
    ("name: t\nports: {base: 65000}\norganizations:\n  - name: a\n", 2, ["ports.base", "less than or equal to 60000"]),
    ("name: t\norganizations:\n" + "".join(f"  - {{name: o{i}, validators: 8, members: 8}}\n" for i in range(40)), 1, ["640 nodes are more than the 256"]),
    ("name: t\norganizations:\n" + "".join(f"  - {{name: o{i}, accounts: 1000}}\n" for i in range(21)), 1, ["21000 accounts in all are more than 20000"]),
    ("name: t\norganizations:\n" + "".join(f"  - {{name: o{i}}}\n" for i in range(129)), 2, ["at most 128 items"]),
    ("name: t\naccount_balance_eth: 1000000000000000000000000000000000000000000000000000000000000000000000\norganizations: [{name: a}]\n", 2, ["account_balance_eth", "less than or equal to 1000000000000000"]),
    ("name: t\nchain_id: '21000'\norganizations: [{name: a}]\n", 2, ["chain_id", "valid integer"]),
    ("name: t\nchain_id: 4.0\norganizations: [{name: a}]\n", 2, ["chain_id", "valid integer"]),
    ("name: t\nchain_id: true\norganizations: [{name: a}]\n", 2, ["chain_id", "valid integer"]),
    ("name: t\norganizations: [{name: a, solver: 'yes'}]\n", 2, ["solver", "valid boolean"]),
]


@pytest.mark.parametrize("text,line,needles", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_specs_give_one_clear_line(tmp_path, text, line, needles):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_network_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}:"), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_network_spec(tmp_path / "nope.yaml")


def test_json_schema_rejects_unknown_keys():
    schema = NetworkSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "organizations" in schema["required"]
