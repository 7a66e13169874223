"""Build or locate node binaries and the Solidity compiler, cached outside the repo.

Versions are pinned here and nowhere else. Builds are idempotent: a cached binary that
runs and reports the pinned version is reused. The cache lives in $TESTBED_CACHE or
~/.cache/cti-testbed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GoTool:
    """A Go binary built from the Go module proxy."""

    name: str
    package: str  # the main package to build
    version: str  # module version (or pseudo-version)
    version_marker: str  # substring of `<binary> version` output proving the right build
    ldflags: str = "-checklinkname=0"
    wrapper_go_mod: str | None = None  # when set, build through a wrapper main module with this go.mod

    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def binary_path(self) -> Path:
        return self.cache_dir() / "bin" / ("geth" if self.package.endswith("/cmd/geth") else self.name)


# go-ethereum v1.13.15: the last release that seals Clique blocks (see shared FACTS).
# -checklinkname=0: github.com/fjl/memsize links runtime internals that Go >= 1.23 rejects.
GETH = GoTool(
    name="geth",
    package="github.com/ethereum/go-ethereum/cmd/geth",
    version="v1.13.15",
    version_marker="1.13.15",
)

GO_TOOLS: dict[str, GoTool] = {GETH.name: GETH}

# The Solidity compiler is the npm package `solc`, pinned in contracts/package-lock.json.
NPM_PROJECT = REPO_ROOT / "contracts"


def cache_root() -> Path:
    root = os.environ.get("TESTBED_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "cti-testbed"


def _require(tool: str, what: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise ToolchainError(f"'{tool}' is not installed; it is needed to {what}", hint=f"install {tool} and run again")
    return found


def _binary_ok(tool: GoTool, path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PRIVATE_CONFIG": "ignore"})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return tool.version_marker in out.stdout


def locate(name: str) -> Path | None:
    """The cached binary for a tool if it is built and sound, else None (never builds)."""
    tool = GO_TOOLS.get(name)
    if tool is None:
        raise ToolchainError(f"unknown tool {name!r}; known tools: {', '.join(sorted(GO_TOOLS))}")
    path = tool.binary_path()
    return path if _binary_ok(tool, path) else None


def ensure(name: str, *, log=None) -> Path:
    """Return the path of a built, working binary for `name`, building it once if needed."""
    found = locate(name)
    if found:
        return found
    tool = GO_TOOLS[name]
    go = _require("go", f"build {tool.name} {tool.version}")
    _require("gcc", f"build {tool.name} {tool.version} (cgo)")
    bin_dir = tool.binary_path().parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
    if log:
        log(f"building {tool.name} {tool.version} from the Go module proxy (once; cached in {tool.cache_dir()})")
    build_log = tool.cache_dir() / "build.log"
    if tool.wrapper_go_mod is None:
        cmd = [go, "install", f"-ldflags={tool.ldflags}", f"{tool.package}@{tool.version}"]
        cwd = tempfile.mkdtemp(prefix="tb-build-")
        env["GOBIN"] = str(bin_dir)
    else:
        cwd = str(tool.cache_dir() / "wrapper")
        Path(cwd).mkdir(parents=True, exist_ok=True)
        (Path(cwd) / "go.mod").write_text(tool.wrapper_go_mod)
        (Path(cwd) / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n')
        subprocess.run([go, "mod", "tidy"], cwd=cwd, env=env, capture_output=True, text=True)
        cmd = [go, "build", f"-ldflags={tool.ldflags}", "-o", str(tool.binary_path()), tool.package]
    with open(build_log, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not _binary_ok(tool, tool.binary_path()):
        tail = build_log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise ToolchainError(f"building {tool.name} {tool.version} failed: {tail[0]}", hint=f"full log: {build_log}")
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
