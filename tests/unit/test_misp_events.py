"""MISP events with objects: generated samples, the shipped sample event, a scenario's `event:`
file checked before anything starts (one line naming the file, the step and the fix)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from solver.seed import sample_event
from testbed.cti.misp import MispEventError, attribute_rows, parse_event
from testbed.errors import SpecError
from testbed.scenario.resolve import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_EVENT = ROOT / "scenarios" / "events" / "phishing-campaign.json"


def test_generated_events_carry_file_url_and_domain_ip_objects_and_survive_json():
    event = sample_event(random.Random(7), "acme-cert", 0)
    assert {o.name for o in event.objects} == {"file", "url", "domain-ip"}
    back = parse_event(event.to_json())
    rows = attribute_rows(back)
    assert rows == attribute_rows(event)
    assert {r[0] for r in rows} == {"", "file", "url", "domain-ip"}  # standalone attributes and objects'
    assert ("file", "sha256") in {(r[0], r[1]) for r in rows}


def test_the_shipped_event_is_a_valid_misp_event_with_objects():
    event = parse_event(SHIPPED_EVENT.read_bytes())
    assert {o.name for o in event.objects} == {"file", "url", "domain-ip"}
    assert event.attributes and "Phishing" in event.info


@pytest.mark.parametrize("raw, message", [
    (b"[1]", "not an object"), (b'{"Event": {"info": "x"}}', "no uuid"), (b"{", "not JSON"),
    (b'{"Event": {"uuid": "5f0c2b8e-8d4a-4c7e-9b1a-3e2f6a7d9c41", "info": "empty"}}', "no attributes or objects"),
])
def test_what_is_not_a_misp_event_is_refused_with_the_reason(raw, message):
    with pytest.raises(MispEventError, match=message):
        parse_event(raw)


def test_a_listing_uuid_other_than_the_events_is_refused():
    with pytest.raises(MispEventError, match="is not the listed"):
        parse_event(SHIPPED_EVENT.read_bytes(), "00000000-0000-4000-8000-000000000000")


def _scenario(tmp_path: Path, event: str) -> Path:
    network = (ROOT / "scenarios" / "networks" / "four-orgs.yaml").resolve()
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nnetwork: {network}\nsteps:\n  - publish: {{org: acme-cert, as: iocs, event: {event}}}\n")
    return path


def test_a_scenario_publish_step_names_its_event_file_relative_to_the_scenario(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "e.json").write_bytes(SHIPPED_EVENT.read_bytes())
    scenario = load_scenario(_scenario(tmp_path, "events/e.json"))
    assert scenario.event_files == {"iocs": str((tmp_path / "events" / "e.json").resolve())}
    shipped = load_scenario(ROOT / "scenarios" / "phishing-campaign.yaml")
    assert shipped.event_files == {"phishing-iocs": str(SHIPPED_EVENT.resolve())}


def test_a_bad_event_file_fails_the_scenario_check_in_one_line(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"Event": {"info": "no uuid"}}))
    with pytest.raises(SpecError) as bad:
        load_scenario(_scenario(tmp_path, "bad.json"))
    assert str(bad.value).startswith(f"{tmp_path / 's.yaml'}:4: steps.0.publish.event: ")
    assert "no uuid" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(SpecError, match="cannot read .*missing.json"):
        load_scenario(_scenario(tmp_path, "missing.json"))
