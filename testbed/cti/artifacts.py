"""The committed compiler output in contracts/artifacts/: ABI, bytecode, compiler, source hash."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from eth_utils import keccak

from testbed.errors import ToolchainError
from testbed.toolchain import NPM_PROJECT

ARTIFACT_DIR = NPM_PROJECT / "artifacts"
# Deployment order matters: addresses are predicted from the deployer's nonce.
CONTRACT_NAMES = ("Membership", "Activity", "CtiMarket", "Tasks", "Feedback")


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict]
    bytecode: str
    compiler_version: str
    source_hash: str


@cache
def load(name: str, directory: Path = ARTIFACT_DIR) -> Artifact:
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ToolchainError(f"cannot read contract artifact {path}: {exc}",
                             hint="run 'python -m testbed.cti.compile'") from exc
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"],
                    compiler_version=data["compiler"]["version"], source_hash=data["sourceHash"])


def load_all() -> dict[str, Artifact]:
    return {name: load(name) for name in CONTRACT_NAMES}


@dataclass(frozen=True)
class ErrorAbi:
    name: str
    types: tuple[str, ...]
    names: tuple[str, ...]


@cache
def error_table() -> dict[bytes, ErrorAbi]:
    """Custom-error selector -> its ABI, over every contract (errors bubble across calls)."""
    table: dict[bytes, ErrorAbi] = {}
    for artifact in load_all().values():
        for item in artifact.abi:
            if item["type"] != "error":
                continue
            types = tuple(_abi_type(i) for i in item["inputs"])
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            table[selector] = ErrorAbi(item["name"], types, tuple(i["name"] for i in item["inputs"]))
    return table


def _abi_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]
