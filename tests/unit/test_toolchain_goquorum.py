"""GoQuorum in the toolchain: built from a vendored source archive (sha256-checked) or taken
from the operator's binary. Nothing here runs a real Go build: the cache is a tmp dir and
`go` is a fake script where a build step is exercised."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from testbed import toolchain
from testbed.errors import ToolchainError

PINNED = "0f342ffe4ec5b12646423a18528e5189635482ab8a61cbc76d251fa2cceee8fa"
# the archive .ci/run and the Makefile point the toolchain at; else where it sits beside a checkout
VENDORED = Path(os.environ.get("TESTBED_GOQUORUM_SOURCE") or
                Path(__file__).resolve().parents[2].parent / "shared" / "vendor" / "goquorum-v24.4.1-src.tar.xz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no GoQuorum variables from the caller, and no real build."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TESTBED_GOQUORUM_SOURCE", raising=False)
    monkeypatch.delenv("TESTBED_GOQUORUM_BIN", raising=False)

    def no_build(tool, what):
        raise AssertionError(f"a unit test reached the real build ({tool}: {what})")

    monkeypatch.setattr(toolchain, "_require", no_build)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_geth(path: Path, version: str) -> Path:
    return script(path, f'echo Geth\necho "Version: 1.10.3-stable"\necho "Quorum Version: {version}"\n')


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_pin_matches_the_vendored_readme():
    assert toolchain.GOQUORUM.sha256 == PINNED
    assert toolchain.GOQUORUM.binary_path() == toolchain.cache_root() / "goquorum-v24.4.1" / "bin" / "geth"


def test_wrong_sha256_is_one_line_naming_file_and_expected(tmp_path, monkeypatch):
    archive = tmp_path / "goquorum-v24.4.1-src.tar.xz"
    archive.write_bytes(b"not the source")
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(archive))
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure("goquorum")
    text = one_line(err)
    assert str(archive) in text and PINNED in text
    assert hashlib.sha256(b"not the source").hexdigest() in text
    assert not toolchain.GOQUORUM.binary_path().exists()


def test_missing_archive_names_file_and_expected_sha(tmp_path, monkeypatch):
    archive = tmp_path / "nowhere" / "goquorum-v24.4.1-src.tar.xz"
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(archive))
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure("goquorum")
    text = one_line(err)
    assert str(archive) in text and PINNED in text and "does not exist" in text


def test_neither_variable_names_both_ways():
    assert not toolchain.available("goquorum")
    assert toolchain.locate("goquorum") is None
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure("goquorum")
    text = one_line(err)
    assert "TESTBED_GOQUORUM_SOURCE" in text and "TESTBED_GOQUORUM_BIN" in text
    assert "../shared/vendor/goquorum-v24.4.1-src.tar.xz" in text and "Makefile" in text


def test_operator_binary_with_another_version_is_refused(tmp_path, monkeypatch):
    binary = fake_geth(tmp_path / "geth", "23.4.0")
    monkeypatch.setenv("TESTBED_GOQUORUM_BIN", str(binary))
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure("goquorum")
    text = one_line(err)
    assert str(binary) in text and "Quorum Version: 23.4.0" in text and "expected 24.4.1" in text
    assert toolchain.locate("goquorum") is None


def test_operator_binary_that_is_plain_geth_is_refused(tmp_path, monkeypatch):
    binary = script(tmp_path / "geth", 'echo Geth\necho "Version: 1.13.15-stable"\n')
    monkeypatch.setenv("TESTBED_GOQUORUM_BIN", str(binary))
    with pytest.raises(ToolchainError, match=r"reports version 'Version: 1\.13\.15-stable'; expected 24\.4\.1"):
        toolchain.ensure("goquorum")


def test_operator_binary_missing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_GOQUORUM_BIN", str(tmp_path / "absent"))
    with pytest.raises(ToolchainError, match="TESTBED_GOQUORUM_BIN=.*absent does not exist"):
        toolchain.ensure("goquorum")


def test_operator_binary_with_24_4_1_is_used_as_is(tmp_path, monkeypatch):
    binary = fake_geth(tmp_path / "geth", "24.4.1")
    monkeypatch.setenv("TESTBED_GOQUORUM_BIN", str(binary))
    # the source variable is ignored when a good binary is named
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(tmp_path / "absent.tar.xz"))
    assert toolchain.available("goquorum")
    assert toolchain.ensure("goquorum") == binary.resolve()
    assert toolchain.locate("goquorum") == binary.resolve()
    assert not toolchain.GOQUORUM.cache_dir().exists()  # the cache is untouched


def test_cached_binary_is_reused_without_any_variable():
    cached = toolchain.GOQUORUM.binary_path()
    cached.parent.mkdir(parents=True)
    fake_geth(cached, "24.4.1")
    assert toolchain.available("goquorum")
    assert toolchain.locate("goquorum") == cached
    assert toolchain.ensure("goquorum") == cached


def test_directory_without_go_mod_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "_require", lambda tool, what: tool)
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(tmp_path))
    with pytest.raises(ToolchainError, match="is a directory without go.mod"):
        toolchain.ensure("goquorum")


# ---- the build steps, with a fake `go` ---------------------------------------------------------

FAKE_GO = """out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; shift; fi
  shift
done
[ -f go.mod ] || { echo "no go.mod in $(pwd)"; exit 1; }
pwd > "$FAKE_GO_CWD"
echo "$CGO_ENABLED" > "$FAKE_GO_CGO"
printf '#!/bin/sh\\n[ "$PRIVATE_CONFIG" = ignore ] || exit 3\\necho "Quorum Version: %s"\\n' "$FAKE_GO_VERSION" > "$out"
chmod +x "$out"
"""


@pytest.fixture
def fake_go(tmp_path, monkeypatch):
    go = script(tmp_path / "go", FAKE_GO)
    monkeypatch.setattr(toolchain, "_require", lambda tool, what: str(go) if tool == "go" else tool)
    monkeypatch.setenv("FAKE_GO_CWD", str(tmp_path / "go-cwd"))
    monkeypatch.setenv("FAKE_GO_CGO", str(tmp_path / "go-cgo"))
    monkeypatch.setenv("FAKE_GO_VERSION", "24.4.1")
    return tmp_path


def small_archive(path: Path) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in (("quorum-v24.4.1/go.mod", b"module github.com/ethereum/go-ethereum\n"),
                           ("quorum-v24.4.1/cmd/geth/main.go", b"package main\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_is_checked_unpacked_under_the_cache_built_and_removed(fake_go, monkeypatch):
    archive = small_archive(fake_go / "src.tar.xz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(toolchain.VENDORED_TOOLS, "goquorum", dataclasses.replace(toolchain.GOQUORUM, sha256=digest))
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(archive))
    lines: list[str] = []
    built = toolchain.ensure("goquorum", log=lines.append)
    assert built == toolchain.GOQUORUM.binary_path()
    assert toolchain.locate("goquorum") == built
    cwd = Path((fake_go / "go-cwd").read_text().strip())
    assert cwd.name == "quorum-v24.4.1" and cwd.parent.parent == toolchain.GOQUORUM.cache_dir()
    assert (fake_go / "go-cgo").read_text().strip() == "1"
    assert not cwd.exists()  # the unpacked tree is gone
    assert sorted(p.name for p in built.parent.iterdir()) == ["geth"]  # no temp name left behind
    assert any("building goquorum v24.4.1" in line for line in lines)
    assert "-ldflags=-checklinkname=0 -o" in (toolchain.GOQUORUM.cache_dir() / "build.log").read_text()


def test_unpacked_directory_is_built_in_place_and_kept(fake_go, monkeypatch):
    tree = fake_go / "quorum-v24.4.1"
    (tree / "cmd" / "geth").mkdir(parents=True)
    (tree / "go.mod").write_text("module github.com/ethereum/go-ethereum\n")
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(tree))
    assert toolchain.ensure("goquorum") == toolchain.GOQUORUM.binary_path()
    assert (tree / "go.mod").is_file()
    assert Path((fake_go / "go-cwd").read_text().strip()) == tree


def test_build_reporting_another_version_leaves_no_binary(fake_go, monkeypatch):
    tree = fake_go / "src"
    tree.mkdir()
    (tree / "go.mod").write_text("module x\n")
    monkeypatch.setenv("TESTBED_GOQUORUM_SOURCE", str(tree))
    monkeypatch.setenv("FAKE_GO_VERSION", "22.7.0")
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure("goquorum")
    assert "expected 24.4.1" in one_line(err)
    bin_dir = toolchain.GOQUORUM.binary_path().parent
    assert not os.listdir(bin_dir)


@pytest.mark.skipif(not VENDORED.is_file(), reason="the shared vendored archive is not on this machine")
def test_the_vendored_archive_matches_the_pin():
    toolchain.check_archive(toolchain.GOQUORUM, VENDORED)
