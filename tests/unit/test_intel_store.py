"""The Solver's directory of MISP events (solver.intel.DirectoryStore): an event is validated
with pymisp when it is first read and again whenever its bytes change, not on every task."""

import json
from pathlib import Path

import pytest

from solver import intel
from solver.intel import DirectoryStore, IntelError

EVENT = Path(__file__).resolve().parents[2] / "scenarios" / "events" / "phishing-campaign.json"
UUID = json.loads(EVENT.read_text())["Event"]["uuid"]


@pytest.fixture
def store(tmp_path):
    directory = tmp_path / "intel"
    directory.mkdir()
    (directory / f"{UUID}.json").write_bytes(EVENT.read_bytes())
    return DirectoryStore(directory)


def test_an_unchanged_event_is_validated_once(store, monkeypatch):
    calls = []
    real = intel.validate_event
    monkeypatch.setattr(intel, "validate_event", lambda raw, uuid: calls.append(uuid) or real(raw, uuid))
    assert store.load(UUID) == EVENT.read_bytes()
    assert store.load(UUID) == EVENT.read_bytes()
    assert calls == [UUID]


def test_an_event_broken_after_it_was_read_is_refused(store):
    store.load(UUID)
    store.path(UUID).write_text('{"Event": {"uuid": "' + UUID + '", "info": ')  # truncated JSON
    with pytest.raises(IntelError):
        store.load(UUID)
    store.path(UUID).write_bytes(EVENT.read_bytes())  # mended: valid again
    assert store.load(UUID) == EVENT.read_bytes()


def test_a_missing_event_names_its_uuid(store):
    other = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    with pytest.raises(IntelError, match=other):
        store.load(other)
