"""Where the files the project ships live: network specs and scenarios, the contracts' npm project
(sources, pinned compiler, compiled artifacts), the ansible playbooks and the Grafana dashboard.

From a checkout they are the repository's own directories. A wheel (`pip install .`) carries them
as data files under `<prefix>/share/cti-testbed/` (pyproject.toml, [tool.setuptools.data-files]),
laid out the same way, so an installed `testbed` finds them from any directory.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

MARKER = Path("scenarios") / "networks" / "four-orgs.yaml"  # present in every complete layout


@cache
def root() -> Path:
    """The directory holding scenarios/, contracts/ and infra/: the checkout, else the installed share
    (the checkout when neither is complete: the missing file's own error then names it)."""
    checkout = Path(__file__).resolve().parent.parent
    installed = Path(sys.prefix) / "share" / "cti-testbed"
    if not (checkout / MARKER).is_file() and (installed / MARKER).is_file():
        return installed
    return checkout


def path(*parts: str) -> Path:
    return root().joinpath(*parts)


def _named(directory: Path, name: str) -> Path | None:
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    if not stem or "/" in stem or stem.startswith("."):
        return None
    found = directory / f"{stem}.yaml"
    return found if found.is_file() else None


def scenario_files() -> list[Path]:
    return sorted(path("scenarios").glob("*.yaml"))


def resolve(given: Path, kind: str) -> Path:
    """`given` if it exists; else the shipped scenario (kind "scenario") or network spec (kind
    "network") of that name ('demo', 'four-orgs-clique.yaml'), or the shipped scenarios directory
    for 'scenarios'; else `given` unchanged (its loader then names the missing file)."""
    if given.exists():
        return given
    directory = path("scenarios") if kind == "scenario" else path("scenarios", "networks")
    if kind == "scenario" and str(given).rstrip("/") == "scenarios":
        return directory
    return _named(directory, str(given)) or given
