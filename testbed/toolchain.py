"""Build or locate node binaries and the Solidity compiler, cached outside the repo.

Versions are pinned here and nowhere else. Builds are idempotent: a cached binary that
runs and reports the pinned version is reused. The cache lives in $TESTBED_CACHE or
~/.cache/cti-testbed.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed import shipped
from testbed.errors import ToolchainError



@dataclass(frozen=True)
class GoTool:
    """A Go binary built from the Go module proxy (`go install package@version`)."""

    name: str
    package: str  # the main package to build
    version: str  # module version
    version_marker: str  # substring of `<binary> <version_arg>` output proving the right build
    ldflags: str = "-checklinkname=0"
    version_arg: str = "version"

    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def binary_path(self) -> Path:
        return self.cache_dir() / "bin" / self.package.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class VendoredGoTool:
    """A Go binary built from a source tree the operator names, because the module proxy refuses it.

    The source is `$<source_env>`: a .tar.xz archive (checked against `sha256` before unpacking;
    one top folder `top_dir`) or an unpacked tree holding go.mod. `$<binary_env>` names an
    already built binary instead; it is used as is when its `version` output shows the marker.
    """

    name: str
    version: str
    version_marker: str
    source_env: str
    binary_env: str
    sha256: str  # of the source archive
    top_dir: str  # the archive's single top folder
    package_dir: str  # the main package, relative to the module root
    binary_name: str
    vendored_archive: str  # where the project's shared files keep the archive, relative to the repo
    ldflags: str = "-checklinkname=0"

    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def binary_path(self) -> Path:
        return self.cache_dir() / "bin" / self.binary_name


# go-ethereum v1.13.15: the last release that seals Clique blocks (see shared FACTS).
# -checklinkname=0: github.com/fjl/memsize links runtime internals that Go >= 1.23 rejects.
GETH = GoTool(
    name="geth",
    package="github.com/ethereum/go-ethereum/cmd/geth",
    version="v1.13.15",
    version_marker="1.13.15",
)

# clef of the same release: geth Clique nodes seal through it (testbed/clients/clef.py).
CLEF = GoTool(
    name="clef",
    package="github.com/ethereum/go-ethereum/cmd/clef",
    version="v1.13.15",
    version_marker="1.13.15",
    version_arg="--version",
)

# GoQuorum v24.4.1 (its last release; tag v24.4.1, commit 8585ac91f198). The Go module proxy
# refuses every GoQuorum module path, so it is built from the source archive the project's
# shared files carry (../shared/vendor/goquorum-v24.4.1-src.tar.xz, README beside it); its
# dependencies are ordinary modules from the proxy. Run with PRIVATE_CONFIG=ignore.
GOQUORUM = VendoredGoTool(
    name="goquorum",
    version="v24.4.1",
    version_marker="24.4.1",  # `geth version` prints "Quorum Version: 24.4.1"
    source_env="TESTBED_GOQUORUM_SOURCE",
    binary_env="TESTBED_GOQUORUM_BIN",
    sha256="0f342ffe4ec5b12646423a18528e5189635482ab8a61cbc76d251fa2cceee8fa",
    top_dir="quorum-v24.4.1",
    package_dir="./cmd/geth",
    binary_name="geth",
    vendored_archive="../shared/vendor/goquorum-v24.4.1-src.tar.xz",
)

# GO_TOOLS: always built by `testbed toolchain`. VENDORED_TOOLS: built by `testbed toolchain`
# when a source or binary is named (see available()), and by `testbed up` when a spec needs them.
GO_TOOLS: dict[str, GoTool] = {GETH.name: GETH, CLEF.name: CLEF}
VENDORED_TOOLS: dict[str, VendoredGoTool] = {GOQUORUM.name: GOQUORUM}

# The Solidity compiler is the npm package `solc`, pinned in contracts/package-lock.json.
NPM_PROJECT = shipped.path("contracts")


def cache_root() -> Path:
    root = os.environ.get("TESTBED_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "cti-testbed"


def _require(tool: str, what: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise ToolchainError(f"'{tool}' is not installed; it is needed to {what}", hint=f"install {tool} and run again")
    return found


def _version_output(path: Path, arg: str = "version") -> str | None:
    """`<path> version`'s stdout (run with PRIVATE_CONFIG=ignore for GoQuorum), or None if it cannot run."""
    try:
        out = subprocess.run([str(path), arg], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PRIVATE_CONFIG": "ignore"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout


def _binary_ok(tool: GoTool | VendoredGoTool, path: Path) -> bool:
    if not path.is_file():
        return False
    output = _version_output(path, getattr(tool, "version_arg", "version"))
    return output is not None and tool.version_marker in output


def _tool(name: str) -> GoTool | VendoredGoTool:
    known = {**GO_TOOLS, **VENDORED_TOOLS}
    if name not in known:
        raise ToolchainError(f"unknown tool {name!r}; known tools: {', '.join(sorted(known))}")
    return known[name]


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else None


def locate(name: str) -> Path | None:
    """The binary for a tool if it is there and sound, else None (never builds).

    For a vendored tool, the operator's `$<binary_env>` comes first when set.
    """
    tool = _tool(name)
    if isinstance(tool, VendoredGoTool):
        given = _env_path(tool.binary_env)
        if given is not None:
            return given.resolve() if _binary_ok(tool, given) else None
    path = tool.binary_path()
    return path if _binary_ok(tool, path) else None


def available(name: str) -> bool:
    """Whether ensure(name) has something to work from: always for proxy tools; for a vendored
    tool, a cached binary or one of its two environment variables."""
    tool = _tool(name)
    if isinstance(tool, GoTool):
        return True
    return (_env_path(tool.binary_env) is not None or _env_path(tool.source_env) is not None
            or _binary_ok(tool, tool.binary_path()))


def ensure(name: str, *, log=None) -> Path:
    """Return the path of a built, working binary for `name`, building it once if needed."""
    tool = _tool(name)
    if isinstance(tool, VendoredGoTool):
        return _ensure_vendored(tool, log=log)
    found = locate(name)
    if found:
        return found
    go = _require("go", f"build {tool.name} {tool.version}")
    _require("gcc", f"build {tool.name} {tool.version} (cgo)")
    bin_dir = tool.binary_path().parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod", "GOBIN": str(bin_dir)}
    if log:
        log(f"building {tool.name} {tool.version} from the Go module proxy (once; cached in {tool.cache_dir()})")
    build_log = tool.cache_dir() / "build.log"
    build_log.write_text("")
    cmd = [go, "install", f"-ldflags={tool.ldflags}", f"{tool.package}@{tool.version}"]
    cwd = tempfile.mkdtemp(prefix="tb-build-")
    try:
        with open(build_log, "a") as out:
            result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if result.returncode != 0 or not _binary_ok(tool, tool.binary_path()):
        raise ToolchainError(f"building {tool.name} {tool.version} failed: {_log_tail(build_log)}", hint=f"full log: {build_log}")
    return tool.binary_path()


def _log_tail(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " ".join(lines[-2:]) or "(no output)"


def _reported_version(output: str | None) -> str:
    """The line of a `version` output that names the version, for error messages."""
    if output is None:
        return "nothing (it does not run)"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("Quorum Version:", "Version:"):
        for line in lines:
            if line.startswith(prefix):
                return repr(line)
    return repr(lines[0]) if lines else "nothing"


def _ensure_vendored(tool: VendoredGoTool, *, log=None) -> Path:
    """The operator's binary ($binary_env) if set, else the cached build, else a build from $source_env."""
    given = _env_path(tool.binary_env)
    if given is not None:
        if not given.is_file():
            raise ToolchainError(f"{tool.binary_env}={given} does not exist",
                                 hint=f"name a {tool.name} {tool.version_marker} binary, or unset it to build from {tool.source_env}")
        output = _version_output(given)
        if output is None or tool.version_marker not in output:
            raise ToolchainError(f"{tool.binary_env}={given} reports version {_reported_version(output)}; "
                                 f"expected {tool.version_marker}")
        return given.resolve()
    if _binary_ok(tool, tool.binary_path()):
        return tool.binary_path()
    source = _env_path(tool.source_env)
    if source is None:
        raise ToolchainError(
            f"{tool.name} {tool.version} is not built and no source or binary is named: set {tool.source_env} "
            f"to its source archive (.tar.xz, sha256 {tool.sha256}) or unpacked source tree, "
            f"or {tool.binary_env} to an official {tool.version_marker} release binary",
            hint=f"the Makefile and .ci/run set {tool.source_env} to {tool.vendored_archive} when that file exists; "
                 "see docs/goquorum.md")
    return _build_vendored(tool, source, log=log)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_tree(tool: VendoredGoTool, source: Path) -> Path:
    """The module root in an unpacked source directory (the directory itself or its top_dir)."""
    for candidate in (source, source / tool.top_dir):
        if (candidate / "go.mod").is_file():
            return candidate
    raise ToolchainError(f"{tool.source_env}={source} is a directory without go.mod "
                         f"(nor {tool.top_dir}/go.mod)", hint=f"name the {tool.name} source tree or its .tar.xz archive")


def check_archive(tool: VendoredGoTool, archive: Path) -> None:
    """Refuse an archive that is missing or whose sha256 is not the pinned one (one line)."""
    if not archive.is_file():
        raise ToolchainError(f"{tool.source_env}: {archive} does not exist; expected the {tool.name} {tool.version} "
                             f"source archive with sha256 {tool.sha256}")
    actual = _sha256(archive)
    if actual != tool.sha256:
        raise ToolchainError(f"{tool.source_env}: {archive} has sha256 {actual}; expected {tool.sha256} "
                             f"({tool.name} {tool.version} source)")


def _unpack(tool: VendoredGoTool, archive: Path, into: Path) -> Path:
    try:
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as exc:
        raise ToolchainError(f"cannot unpack {archive}: {exc}") from None
    root = into / tool.top_dir
    if not (root / "go.mod").is_file():
        raise ToolchainError(f"{archive} has no {tool.top_dir}/go.mod")
    return root


def _rmtree(path: Path) -> None:
    """Remove a tree, first making its directories writable (an archive may hold read-only ones)."""
    for dirpath, _dirs, _files in os.walk(path):
        try:
            os.chmod(dirpath, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def _build_vendored(tool: VendoredGoTool, source: Path, *, log=None) -> Path:
    if not source.is_dir():
        if log:
            log(f"checking the sha256 of {source}")
        check_archive(tool, source)
    go = _require("go", f"build {tool.name} {tool.version}")
    _require("gcc", f"build {tool.name} {tool.version} (cgo)")
    cache = tool.cache_dir()
    bin_dir = tool.binary_path().parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    build_log = cache / "build.log"
    build_log.write_text("")
    partial = bin_dir / f".{tool.binary_name}.building-{os.getpid()}"
    work = None
    try:
        if source.is_dir():
            root = _source_tree(tool, source)
        else:
            work = Path(tempfile.mkdtemp(prefix="src-", dir=cache))
            if log:
                log(f"unpacking {source.name} into {work}")
            root = _unpack(tool, source, work)
        if log:
            log(f"building {tool.name} {tool.version} from {source} (once; cached in {cache}; 1-2 min on 2 cores)")
        env = {**os.environ, "CGO_ENABLED": "1"}
        cmd = [go, "build", f"-ldflags={tool.ldflags}", "-o", str(partial), tool.package_dir]
        with open(build_log, "a") as out:
            out.write(f"$ cd {root} && CGO_ENABLED=1 {' '.join(cmd)}\n")
            out.flush()
            result = subprocess.run(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ToolchainError(f"building {tool.name} {tool.version} failed: {_log_tail(build_log)}",
                                 hint=f"full log: {build_log}")
        output = _version_output(partial)
        if output is None or tool.version_marker not in output:
            raise ToolchainError(f"the {tool.name} built from {source} reports version {_reported_version(output)}; "
                                 f"expected {tool.version_marker}", hint=f"full log: {build_log}")
        os.replace(partial, tool.binary_path())
    finally:
        partial.unlink(missing_ok=True)
        if work is not None:
            _rmtree(work)
    if log:
        log(f"{tool.name} {tool.version} built: {tool.binary_path()}")
    return tool.binary_path()


def npm_modules(*, log=None) -> Path:
    """Install contracts/package.json's pinned npm packages (solc, OpenZeppelin) into the cache.

    Keyed by the lockfile's hash, so a changed pin installs afresh and an unchanged one is reused.
    Returns the node_modules directory.
    """
    lock = NPM_PROJECT / "package-lock.json"
    if not lock.is_file():
        raise ToolchainError(f"{lock} is missing", hint="run 'npm install --package-lock-only' in contracts/")
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    target = cache_root() / f"npm-{digest}"
    modules = target / "node_modules"
    if (target / ".complete").is_file():
        return modules
    npm = _require("npm", "install the Solidity compiler (npm package solc)")
    _require("node", "run the Solidity compiler (npm package solc)")
    if log:
        log(f"installing pinned npm packages into {target} (once)")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(NPM_PROJECT / name, target / name)
    result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=target,
                            capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ToolchainError(f"npm ci failed in {target}: {last}")
    (target / ".complete").write_text("ok\n")
    return modules
