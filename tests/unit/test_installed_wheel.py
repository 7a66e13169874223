"""`pip install .` gives a working `testbed` outside the repository: the wheel is built, installed
into a fresh virtualenv, and its commands run from another directory with the shipped files (specs,
scenarios, contract artifacts, playbooks) found under the venv's share/cti-testbed/.

The fresh venv borrows this interpreter's third-party packages through a path file (no download
of web3, Locust, ...); this project itself comes only from the wheel: the editable install of the
checkout is not active there (a path file's own path files are not read)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(dist)],
                   check=True, cwd=base, timeout=600, capture_output=True)
    wheel = next(dist.glob("cti_testbed-*.whl"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the wheel first (pip would take this project, visible through the path file, as installed)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], check=True, timeout=600, capture_output=True)
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "borrowed-deps.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return env_dir, elsewhere


def _run(installed, *argv: str) -> subprocess.CompletedProcess:
    env_dir, cwd = installed
    return subprocess.run([str(env_dir / "bin" / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TESTBED_HOME": str(cwd / "state")})


def test_the_installed_package_is_the_wheel_and_finds_its_shipped_files(installed):
    env_dir, _ = installed
    out = _run(installed, "python", "-c", "import json, testbed, solver; from testbed import shipped; "
               "print(json.dumps([testbed.__file__, solver.__file__, str(shipped.root())]))")
    assert out.returncode == 0, out.stderr
    testbed_file, solver_file, root = json.loads(out.stdout)
    assert testbed_file.startswith(str(env_dir)) and solver_file.startswith(str(env_dir)), (testbed_file, solver_file)
    assert root == str(env_dir / "share" / "cti-testbed")
    shipped = Path(root)
    for name in ("scenarios/demo.yaml", "scenarios/networks/four-orgs.yaml", "contracts/artifacts/Tasks.json",
                 "contracts/package-lock.json", "infra/ansible/site.yml",
                 "infra/ansible/roles/node_service/templates/node.service.j2", "infra/grafana/cti-testbed-dashboard.json",
                 "schemas/network.schema.json"):
        assert (shipped / name).is_file(), name
    # every shipped scenario and network spec of the checkout is in the wheel
    assert sorted(p.name for p in (shipped / "scenarios").glob("*.yaml")) == \
        sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))
    assert sorted(p.name for p in (shipped / "scenarios" / "networks").glob("*.yaml")) == \
        sorted(p.name for p in (ROOT / "scenarios" / "networks").glob("*.yaml"))


def test_installed_commands_work_from_another_directory(installed):
    env_dir, _ = installed
    schema = _run(installed, "testbed", "schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"], schema.stderr
    checked = _run(installed, "testbed", "run", "scenarios", "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    names = {row["scenario"] for row in json.loads(checked.stdout)}
    assert names == {p.stem for p in (ROOT / "scenarios").glob("*.yaml")}
    assert all(row["file"].startswith(str(env_dir)) for row in json.loads(checked.stdout))
    up = _run(installed, "testbed", "up", "--check")  # the default spec, from the wheel
    assert up.returncode == 0 and "goquorum qbft, 4 organizations" in up.stdout, up.stdout + up.stderr
    assert _run(installed, "testbed", "up", "--help").returncode == 0
    assert _run(installed, "solver", "--help").returncode == 0
    missing = _run(installed, "testbed", "run", "no-such-scenario", "--check")
    assert missing.returncode != 0 and "shipped scenario's name (demo" in missing.stderr
    assert "Traceback" not in missing.stderr
