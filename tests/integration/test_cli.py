"""The CLI against real processes: bad input gives one line, a non-zero exit and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from .conftest import NETWORKS, assert_no_process

pytestmark = pytest.mark.integration


def run_cli(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESTBED_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def write_spec(tmp_path, name: str, base: int) -> str:
    text = (NETWORKS / "four-orgs.yaml").read_text().replace("name: four-orgs", f"name: {name}").replace("base: 21000", f"base: {base}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def test_bad_spec_one_line_nothing_written(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclient: parity\norganizations:\n  - name: a\n")
    line = one_error_line(run_cli("up", str(bad), home=home))
    assert f"{bad}:2: client" in line
    assert not home.exists() or not any(home.iterdir())


def test_port_in_use_fails_before_writing_state(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, "ports-busy", 24500)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 24501))
        blocker.listen()
        line = one_error_line(run_cli("up", spec, home=home))
    assert "port 24501" in line and "ports.base" in line
    assert not (home / "ports-busy").exists()


def test_up_twice_down_twice_and_clean_exit(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, "cli-net", 24700)
    try:
        first = run_cli("up", spec, home=home)
        assert first.returncode == 0, first.stderr
        assert "cli-net-" not in first.stderr  # no node names in errors
        status = run_cli("status", "--json", home=home)
        assert status.returncode == 0, status.stderr
        import json

        report = json.loads(status.stdout)
        assert report["agreement"]["agreed"] is True
        assert report["stalled"] is False and 0 <= report["head_age_s"] < 15, report["head_age_s"]
        pids = [n["pid"] for n in report["nodes"]]
        assert all(pids) and len(pids) == 4

        again = one_error_line(run_cli("up", spec, home=home))
        assert "already running" in again

        logs = run_cli("logs", "acme-cert-v1", home=home)
        assert logs.returncode == 0 and logs.stdout.strip()

        two_names = one_error_line(run_cli("down", "cli-net", "--network", "other", home=home))
        assert "two network names" in two_names
        down = run_cli("down", "--network", "cli-net", home=home)  # as every other command names it
        assert down.returncode == 0, down.stderr
        assert_no_process(pids)
        not_running = one_error_line(run_cli("down", home=home))
        assert "not running" in not_running
    finally:
        run_cli("down", "cli-net", "--purge", home=home)


@pytest.mark.parametrize("args, words", [
    (["--workers", "2", "--users", "cti"], ["--users cti", "transfer users only"]),
    (["--remote-workers", "1"], ["--remote-workers", "--master-port"]),
])
def test_bench_refuses_worker_options_that_cannot_work(tmp_path, args, words):
    home = tmp_path / "home"
    line = one_error_line(run_cli("bench", str(NETWORKS / "four-orgs.yaml"), *args, home=home))
    assert all(word in line for word in words), line
    assert not home.exists() or not any(home.iterdir())


@pytest.mark.parametrize("master", ["10.0.0.5", "10.0.0.5:port", "10.0.0.5:99999"])
def test_workers_start_refuses_a_master_that_is_not_host_port(tmp_path, master):
    home = tmp_path / "home"
    line = one_error_line(run_cli("workers", "start", "--master", master, "--count", "1", home=home))
    assert "--master" in line and master in line and "HOST:PORT" in line, line
    assert not home.exists() or not any(home.iterdir())
