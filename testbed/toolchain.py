"""Build or locate node binaries and the Solidity compiler, cached outside the repo.

Versions are pinned here and nowhere else. Builds are idempotent: a cached binary that
runs and reports the pinned version is reused. The cache lives in $TESTBED_CACHE or
~/.cache/cti-testbed.
"""

from __future__ import annotations

import hashlib
import json
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
    # module@version whose own go.mod `replace` lines the wrapper must repeat (replace directives
    # of a dependency are ignored by Go; only the main module's count)
    inherit_replaces_from: str | None = None

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

# GoQuorum v24.4.1 (its last release, commit 8585ac91f198). Its go.mod declares
# `module github.com/ethereum/go-ethereum`, so it is built through a wrapper main module that
# replaces go-ethereum with the GoQuorum commit and repeats GoQuorum's own replace lines
# (github.com/coreos/etcd and others). The replace names the commit; the go command turns it
# into the pseudo-version. Run with PRIVATE_CONFIG=ignore. NOT BUILT HERE: the module proxy
# reachable from this project refuses every GoQuorum module path (see docs/goquorum.md).
GOQUORUM_COMMIT = "8585ac91f198"
GOQUORUM = GoTool(
    name="goquorum",
    package="github.com/ethereum/go-ethereum/cmd/geth",
    version="v24.4.1",
    version_marker="24.4.1",  # `geth version` prints "Quorum Version: 24.4.1"
    wrapper_go_mod=f"""module cti-testbed/goquorum-build

go 1.21

require github.com/ethereum/go-ethereum v1.10.3

replace github.com/ethereum/go-ethereum => github.com/ConsenSys/quorum {GOQUORUM_COMMIT}
""",
    inherit_replaces_from=f"github.com/ConsenSys/quorum@{GOQUORUM_COMMIT}",
)

# GO_TOOLS: what `testbed toolchain` builds. ON_DEMAND_GO_TOOLS: built only when a network
# asks for them (GoQuorum cannot be fetched here; its failure must not block geth).
GO_TOOLS: dict[str, GoTool] = {GETH.name: GETH}
ON_DEMAND_GO_TOOLS: dict[str, GoTool] = {GOQUORUM.name: GOQUORUM}

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


def _tool(name: str) -> GoTool:
    known = {**GO_TOOLS, **ON_DEMAND_GO_TOOLS}
    if name not in known:
        raise ToolchainError(f"unknown tool {name!r}; known tools: {', '.join(sorted(known))}")
    return known[name]


def locate(name: str) -> Path | None:
    """The cached binary for a tool if it is built and sound, else None (never builds)."""
    tool = _tool(name)
    path = tool.binary_path()
    return path if _binary_ok(tool, path) else None


def ensure(name: str, *, log=None) -> Path:
    """Return the path of a built, working binary for `name`, building it once if needed."""
    found = locate(name)
    if found:
        return found
    tool = _tool(name)
    go = _require("go", f"build {tool.name} {tool.version}")
    _require("gcc", f"build {tool.name} {tool.version} (cgo)")
    bin_dir = tool.binary_path().parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
    if log:
        log(f"building {tool.name} {tool.version} from the Go module proxy (once; cached in {tool.cache_dir()})")
    build_log = tool.cache_dir() / "build.log"
    build_log.write_text("")
    if tool.wrapper_go_mod is None:
        cmd = [go, "install", f"-ldflags={tool.ldflags}", f"{tool.package}@{tool.version}"]
        cwd = tempfile.mkdtemp(prefix="tb-build-")
        env["GOBIN"] = str(bin_dir)
    else:
        cwd = str(_prepare_wrapper(tool, go, env, build_log))
        cmd = [go, "build", f"-ldflags={tool.ldflags}", "-o", str(tool.binary_path()), tool.package]
    with open(build_log, "a") as out:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not _binary_ok(tool, tool.binary_path()):
        raise ToolchainError(f"building {tool.name} {tool.version} failed: {_log_tail(build_log)}", hint=f"full log: {build_log}")
    return tool.binary_path()


def _log_tail(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " ".join(lines[-2:]) or "(no output)"


def go_mod_replaces(go_mod: str) -> list[str]:
    """The `replace` directives of a go.mod with a module target, as single-line `old => new v`.

    Local-path targets (./, ../, /) are dropped: they point inside the other module's tree.
    """
    out: list[str] = []
    in_block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
                continue
            body = line
        elif line.startswith("replace") and line[len("replace"):].strip() == "(":
            in_block = True
            continue
        elif line.startswith("replace "):
            body = line[len("replace "):].strip()
        else:
            continue
        if "=>" not in body:
            continue
        target = body.split("=>", 1)[1].strip()
        if not target.startswith((".", "/")):
            out.append(" ".join(body.split()))
    return out


def _run_logged(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n{result.stderr}")
    return result


def _prepare_wrapper(tool: GoTool, go: str, env: dict, log: Path) -> Path:
    """Write the wrapper main module (go.mod + a tools.go importing the package) and tidy it."""
    cwd = tool.cache_dir() / "wrapper"
    cwd.mkdir(parents=True, exist_ok=True)
    go_mod = tool.wrapper_go_mod or ""
    (cwd / "go.mod").write_text(go_mod)
    (cwd / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n')
    if tool.inherit_replaces_from:
        result = _run_logged([go, "mod", "download", "-json", tool.inherit_replaces_from], cwd, env, log)
        try:
            info = json.loads(result.stdout)
        except ValueError:
            info = {}
        if result.returncode != 0 or not info.get("GoMod"):
            with open(log, "a") as out:
                out.write(result.stdout)
            detail = info.get("Error") or _log_tail(log)
            raise ToolchainError(f"cannot download {tool.inherit_replaces_from} for {tool.name}: {detail}",
                                 hint=f"full log: {log}; see docs/goquorum.md")
        module_go_mod = Path(info["GoMod"]).read_text()
        inherited = [r for r in go_mod_replaces(module_go_mod) if r.split()[0] not in go_mod]
        if inherited:
            (cwd / "go.mod").write_text(go_mod + "\n// repeated from " + tool.inherit_replaces_from + "\n"
                                        + "".join(f"replace {r}\n" for r in inherited))
    if _run_logged([go, "mod", "tidy"], cwd, env, log).returncode != 0:
        raise ToolchainError(f"preparing the {tool.name} build module failed: {_log_tail(log)}", hint=f"full log: {log}")
    return cwd


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
