"""Hostile and careless input files: one SpecError line each, fast, never a traceback or a hang."""

from __future__ import annotations

import os

import pytest

from testbed.errors import SpecError, StateError
from testbed.spec import load_network_spec
from testbed.spec.loader import MAX_FILE_BYTES
from testbed.state import StateDir

BOMB = "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9 if p else ["1"] * 9) + "]\n"
               for p, c in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh"))


def _error_of(tmp_path, text: str | bytes) -> str:
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as info:
        load_network_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.mark.parametrize("text, needle", [
    ("name: t\nname: u\norganizations: [{name: a}]\n", "duplicate key 'name' (first on line 1)"),
    (BOMB, "aliases are expanded"),
    ("[" * 20000, "nested deeper than"),
    ("name: t\nchain_id: " + "9" * 5000 + "\norganizations: [{name: a}]\n", "cannot be read"),
    (b"name: t\xff\xfe\n", "not UTF-8"),
])
def test_hostile_text_gets_one_line(tmp_path, text, needle):
    assert needle in _error_of(tmp_path, text)


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(SpecError, match="at most"):
        load_network_spec(path)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "dir"])
def test_only_regular_files_are_read(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)  # nobody writes: reading it would hang
    elif special == "dir":
        path = tmp_path
    else:
        path = special
    with pytest.raises(SpecError, match="not a regular file"):
        load_network_spec(path)


@pytest.mark.parametrize("name", ["../victim", "/etc", "a/b", "", "X", "a" * 40])
def test_a_network_name_is_checked_before_a_path_is_built_from_it(tmp_path, name):
    with pytest.raises(StateError, match="is not a network name"):
        StateDir.for_network(name, tmp_path)
