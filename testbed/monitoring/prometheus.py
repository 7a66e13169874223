"""A Prometheus server for one network: its configuration, its processes, their records.

`up(net)` writes `<state>/monitor/prometheus.yml` and starts, as processes of this machine bound
to 127.0.0.1: Prometheus (scraping every second), the testbed's chain exporter
(testbed/monitoring/exporter.py) and, where installed, prometheus-node-exporter. Their pids and
ports are in `<state>/monitor/monitor.json`; `down(net)` stops them by pid. Jobs scraped:
- `nodes`: every node's own metrics endpoint (geth and GoQuorum: /debug/metrics/prometheus;
  Besu: /metrics), labelled with the node and its organization;
- `testbed`: the chain exporter (heads, lag, peers, blocks and transactions, the pedometer);
- `node_exporter`: the machine's CPU, memory, disk and network.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from pathlib import Path

from testbed.backends import process
from testbed.errors import StateError
from testbed.state import NodeProcess, write_json_atomic

METRICS_PATH = {"geth": "/debug/metrics/prometheus", "goquorum": "/debug/metrics/prometheus", "besu": "/metrics"}
SCRAPE_INTERVAL = "1s"


def monitor_dir(net) -> Path:
    return net.state.root / "monitor"


def record_file(net) -> Path:
    return monitor_dir(net) / "monitor.json"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise StateError("Prometheus is not installed: 'testbed monitor' runs the Debian package's server",
                         hint="apt-get install prometheus prometheus-node-exporter")
    return found


def free_port(wanted: int = 0) -> int:
    """`wanted` if it is free on 127.0.0.1, else any free port (checked as the servers bind: with
    SO_REUSEADDR, so a port its last owner left in TIME_WAIT counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def monitor_ports(directory: Path, names: list[str]) -> dict[str, int]:
    """The ports of the monitor's processes: those of its last start where they are still free (the
    same `instance` labels again, so a restarted monitor continues its series in the same data
    directory instead of leaving the old ones beside the new), kept in `ports.json`."""
    path = directory / "ports.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    ports: dict[str, int] = {}
    for name in names:
        port = free_port(int(previous.get(name, 0)))
        while port in ports.values():
            port = free_port()
        ports[name] = port
    write_json_atomic(path, ports)
    return ports


def node_scrape_jobs(spec, nodes) -> list[dict]:
    """One scrape job per metrics path (geth-family and Besu serve theirs on different paths),
    every node a target labelled with its name and organization."""
    jobs = []
    by_path: dict[str, list] = {}
    for node in nodes:
        by_path.setdefault(METRICS_PATH[spec.client_of(node.org)], []).append(node)
    for path, group in sorted(by_path.items()):
        jobs.append({"job_name": f"nodes{path.replace('/', '_')}", "metrics_path": path, "static_configs": [
            {"targets": [f"{n.host}:{n.ports.metrics}"], "labels": {"node": n.name, "org": n.org}} for n in group]})
    return jobs


def render_config(net, exporter_port: int, node_exporter_port: int | None) -> str:
    """prometheus.yml: the three jobs (see the module docstring)."""
    jobs = node_scrape_jobs(net.spec, net.nodes)
    jobs.append({"job_name": "testbed", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]})
    if node_exporter_port:
        jobs.append({"job_name": "node_exporter", "static_configs": [{"targets": [f"127.0.0.1:{node_exporter_port}"]}]})
    config = {"global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                         "external_labels": {"network": net.name}}, "scrape_configs": jobs}
    return json.dumps(config, indent=1)  # JSON is YAML


def read_record(net) -> dict | None:
    try:
        return json.loads(record_file(net).read_text())
    except (OSError, ValueError):
        return None


def _procs(record: dict) -> list[NodeProcess]:
    return [NodeProcess(name=name, pid=p["pid"], marker=p["marker"]) for name, p in record.get("processes", {}).items()]


def running(net) -> dict | None:
    """The record of a monitor whose processes all run, else None."""
    record = read_record(net)
    if record and all(process.is_alive(p) for p in _procs(record)):
        return record
    return None


def up(net, progress=lambda _: None) -> dict:
    """Start Prometheus, the chain exporter and node-exporter (if installed) for `net`."""
    if running(net):
        raise StateError(f"the monitor of {net.name!r} already runs", hint=f"'testbed monitor down -n {net.name}' first")
    down(net)  # whatever is left of an earlier one
    binary = prometheus_binary()
    directory = monitor_dir(net)
    directory.mkdir(parents=True, exist_ok=True)
    node_exporter = shutil.which("prometheus-node-exporter")
    ports = monitor_ports(directory, ["prometheus", "exporter"] + (["node_exporter"] if node_exporter else []))
    (directory / "prometheus.yml").write_text(render_config(net, ports["exporter"], ports.get("node_exporter")))
    marker = str(directory)  # in every command line: the monitor's processes are told apart by it
    commands = {
        "exporter": [sys.executable, "-m", "testbed.monitoring.exporter", "--network", net.name,
                     "--home", str(net.state.root.parent), "--port", str(ports["exporter"]), "--dir", marker],
        "prometheus": [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
                       f"--web.listen-address=127.0.0.1:{ports['prometheus']}", "--storage.tsdb.retention.time=7d"],
    }
    if node_exporter:
        commands["node_exporter"] = [node_exporter, f"--web.listen-address=127.0.0.1:{ports['node_exporter']}",
                                     f"--collector.textfile.directory={directory}"]
    started: dict[str, dict] = {}
    try:
        for name, argv in commands.items():
            proc = process.spawn(f"monitor-{name}", argv, {}, directory / f"{name}.log", marker)
            started[name] = {"pid": proc.pid, "marker": marker}
    finally:
        write_json_atomic(record_file(net), {"ports": ports, "processes": started, "started": time.time(),
                                             "url": f"http://127.0.0.1:{ports['prometheus']}"})
    progress(f"Prometheus for {net.name!r}: http://127.0.0.1:{ports['prometheus']} "
             f"(nodes, chain exporter{', node-exporter' if node_exporter else ''})")
    return read_record(net)


def down(net) -> list[str]:
    """Stop every monitor process of `net` by pid; the names stopped. Its data stays."""
    record = read_record(net)
    if not record:
        return []
    stopped = []
    for proc in _procs(record):
        if process.is_alive(proc):
            process.stop(proc, timeout=10)
            stopped.append(proc.name)
    record_file(net).unlink(missing_ok=True)
    return stopped
