"""Compile the CTI contracts with the pinned npm solc and write reproducible artifacts.

    python -m testbed.cti.compile          # rewrite contracts/artifacts/*.json
    python -m testbed.cti.compile --check  # exit 1 if the committed artifacts are stale

The compiler and OpenZeppelin come from contracts/package-lock.json, installed once into
the testbed cache by `testbed.toolchain.npm_modules()`. Artifacts are JSON with sorted
keys; the `sourceHash` covers every source text (ours and OpenZeppelin's) and the
compiler settings, so a changed input always shows.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from testbed.errors import ToolchainError
from testbed.toolchain import NPM_PROJECT, npm_modules

SRC_DIR = NPM_PROJECT / "src"
ARTIFACT_DIR = NPM_PROJECT / "artifacts"
SOLC_SCRIPT = NPM_PROJECT / "scripts" / "solc.js"
CONTRACTS = ("Membership", "Activity", "CtiMarket", "Tasks", "Feedback")
SETTINGS = {
    "evmVersion": "london",  # the chains are pre-Shanghai (Clique): no PUSH0
    "optimizer": {"enabled": True, "runs": 200},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def standard_input() -> dict:
    sources = {f"src/{p.name}": {"content": p.read_text()} for p in sorted(SRC_DIR.glob("*.sol"))}
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compile_contracts(*, log=None) -> dict[str, dict]:
    """Compile and return {contract name: artifact}. Raises ToolchainError on any error."""
    modules = npm_modules(log=log)
    std_input = standard_input()
    try:
        proc = subprocess.run(["node", str(SOLC_SCRIPT), str(modules)], input=json.dumps(std_input),
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"running solc failed: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ToolchainError(f"solc exited with {proc.returncode}: {last}")
    result = json.loads(proc.stdout)
    output = result["output"]
    # Warnings fail the build too: the sources are ours and small enough to keep clean.
    problems = [e for e in output.get("errors", []) if e.get("severity") in ("error", "warning")]
    if problems:
        raise ToolchainError("Solidity compilation failed:\n" + "\n".join(e["formattedMessage"] for e in problems))
    # Sources OpenZeppelin pulled in are part of the input that produced the bytecode.
    all_sources = {name: hashlib.sha256(_source_text(name, std_input, modules).encode()).hexdigest()
                   for name in sorted(output["sources"])}
    source_hash = _digest({"sources": all_sources, "settings": SETTINGS})
    artifacts = {}
    for file, contracts in output["contracts"].items():
        for name, data in contracts.items():
            if name not in CONTRACTS:
                continue
            artifacts[name] = {
                "contractName": name,
                "sourceFile": file,
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "compiler": {"name": "solc-js", "version": result["version"], "settings": {
                    k: v for k, v in SETTINGS.items() if k != "outputSelection"}},
                "sourceHash": source_hash,
                "sources": all_sources,
            }
    missing = set(CONTRACTS) - set(artifacts)
    if missing:
        raise ToolchainError(f"compiler output lacks contracts: {', '.join(sorted(missing))}")
    return artifacts


def _source_text(name: str, std_input: dict, modules: Path) -> str:
    if name in std_input["sources"]:
        return std_input["sources"][name]["content"]
    return (modules / name).read_text()


def render(artifact: dict) -> str:
    return json.dumps(artifact, sort_keys=True, indent=1) + "\n"


def write_artifacts(artifacts: dict[str, dict], directory: Path = ARTIFACT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = directory / f"{name}.json"
        path.write_text(render(artifact))
        written.append(path)
    return written


def stale_artifacts(artifacts: dict[str, dict], directory: Path = ARTIFACT_DIR) -> list[str]:
    """Names whose committed artifact differs from `artifacts` (a fresh compile)."""
    stale = []
    for name, artifact in sorted(artifacts.items()):
        path = directory / f"{name}.json"
        if not path.is_file() or path.read_text() != render(artifact):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    artifacts = compile_contracts(log=lambda m: print(m, file=sys.stderr))
    if "--check" in argv:
        stale = stale_artifacts(artifacts)
        if stale:
            print(f"stale artifacts: {', '.join(stale)} (run python -m testbed.cti.compile)", file=sys.stderr)
            return 1
        print("artifacts match a fresh compile")
        return 0
    for path in write_artifacts(artifacts):
        size = (len(artifacts[path.stem]["deployedBytecode"]) - 2) // 2
        print(f"wrote {path.relative_to(NPM_PROJECT.parent)} (runtime {size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
