"""The JSON Schemas editors validate the shipped files with (schemas/, named by a yaml-language-server
modeline in every shipped YAML) are the ones the code defines, and the shipped files pass them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from testbed.spec.network import json_schema as network_schema
from testbed.spec.scenario import json_schema as scenario_schema

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"network": (network_schema, sorted((ROOT / "scenarios" / "networks").glob("*.yaml"))),
         "scenario": (scenario_schema, sorted((ROOT / "scenarios").glob("*.yaml")))}


@pytest.mark.parametrize("kind", KINDS)
def test_schema_files_are_current(kind):
    schema, _ = KINDS[kind]
    written = (ROOT / "schemas" / f"{kind}.schema.json").read_text()
    assert written == json.dumps(schema(), indent=2, sort_keys=True) + "\n", \
        f"schemas/{kind}.schema.json is stale: run 'make schemas'"


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_file_names_its_schema_and_passes_it(kind):
    schema, files = KINDS[kind]
    assert files
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == ROOT / "schemas" / f"{kind}.schema.json", (path, target)
        jsonschema.validate(yaml.safe_load(path.read_text()), schema())
