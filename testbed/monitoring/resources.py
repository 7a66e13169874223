"""Per-node resource series of a run, read back from Prometheus (`monitor: prometheus` in a
scenario, `testbed bench|load --monitor prometheus`), in the rows resources.jsonl holds
(testbed.resources is the psutil source of the same rows).

What each node reports about itself, wherever it runs (this machine, a namespace, an ansible
host), scraped by the network's Prometheus (testbed.monitoring.prometheus):
- geth and GoQuorum: `system_cpu_procload` (the process's CPU, % of one core, refreshed every
  3 s), `system_memory_held` (memory held by the Go heap: not the RSS, a row names it `heap_mb`),
  `system_disk_readbytes`/`writebytes` and `p2p_ingress`/`p2p_egress` (bytes so far);
- Besu: `process_cpu_seconds_total` (as a rate) and `process_resident_memory_bytes` (RSS);
- node-exporter, where it runs: the machine's CPU (all cores, % of one) and memory in use,
  as the process `machine <instance>`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from testbed.errors import StateError
from testbed.monitoring import prometheus
from testbed.poll import poll_until
from testbed.resources import ResourceSampler, node_pids
from testbed.spec.scenario import RESOURCE_SOURCES

MB = 2**20
GETH_FAMILY = {"cpu_percent": ("system_cpu_procload", 1.0), "heap_mb": ("system_memory_held", 1 / MB),
               "read_mb": ("system_disk_readbytes", 1 / MB), "write_mb": ("system_disk_writebytes", 1 / MB),
               "rx_mb": ("p2p_ingress", 1 / MB), "tx_mb": ("p2p_egress", 1 / MB)}
QUERIES = {  # client -> row field -> (PromQL over the `nodes_*` jobs, scale)
    "geth": GETH_FAMILY, "goquorum": GETH_FAMILY,
    "besu": {"cpu_percent": ("rate(process_cpu_seconds_total[5s]) * 100", 1.0),
             "rss_mb": ("process_resident_memory_bytes", 1 / MB)},
}
MACHINE = {"cpu_percent": ('sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5s])) * 100', 1.0),
           "used_mb": ("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", 1 / MB)}


def node_query(expr: str) -> str:
    """`expr` limited to the node jobs (a bare metric name gets the selector, a function its argument)."""
    selector = '{job=~"nodes.*"}'
    if "(" in expr:
        name = expr.split("(", 1)[1].split("[", 1)[0]
        return expr.replace(name, name + selector, 1)
    return expr + selector


def rows_from_series(series: dict[str, list[dict]], process_label: str, fixed: dict | None = None) -> list[dict]:
    """Prometheus range results per row field -> resources rows: one per process and time stamp
    that has at least one value. `series[field]` is the API's `result` (metric labels, values)."""
    merged: dict[tuple[str, float], dict] = {}
    for field_name, results in series.items():
        for result in results:
            proc = process_label.format(**result["metric"])
            for stamp, value in result["values"]:
                row = merged.setdefault((proc, float(stamp)), {"time": float(stamp), "process": proc, "pid": None,
                                                                 "source": "prometheus", **(fixed or {})})
                row[field_name] = round(float(value), 3)
    return sorted(merged.values(), key=lambda r: (r["time"], r["process"]))


@dataclass
class PrometheusResources:
    """The network's Prometheus for one run: the one running, or one started for the run (and
    stopped by `close`)."""

    net: object
    url: str
    own: bool
    started: float | None = None  # set by `start`; `stop` reads the series since then once

    @classmethod
    def open(cls, net, progress=lambda _: None, timeout: float = 60.0) -> "PrometheusResources":
        record = prometheus.running(net)
        own = record is None
        if own:
            record = prometheus.up(net, progress)
        source = cls(net, record["url"], own)
        try:
            if not poll_until(source.nodes_scraped, timeout=timeout, interval=0.5):
                raise StateError(f"Prometheus at {source.url} scraped no node of {net.name!r} within {timeout:.0f}s",
                                 hint=f"see {prometheus.monitor_dir(net) / 'prometheus.log'}")
        except BaseException:
            source.close()
            raise
        return source

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError) as exc:
            raise StateError(f"Prometheus at {self.url}: {path} failed: {exc}") from None
        if body.get("status") != "success":
            raise StateError(f"Prometheus at {self.url}: {path}: {body.get('error', body)}")
        return body["data"]

    def nodes_scraped(self) -> bool:
        """Every node's endpoint answered its last scrape."""
        try:
            targets = self.api("targets")["activeTargets"]
        except StateError:
            return False
        nodes = [t for t in targets if t["labels"].get("job", "").startswith("nodes")]
        return len(nodes) == len(self.net.nodes) and all(t["health"] == "up" for t in nodes)

    def _range(self, expr: str, factor: float, start: float, end: float, step: float) -> list[dict]:
        """The range query's results, every value scaled by `factor`."""
        results = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")["result"]
        return [{**r, "values": [[t, float(v) * factor] for t, v in r["values"]]} for r in results]

    def rows(self, start: float, end: float, step: float = 1.0) -> list[dict]:
        """Every node's series (and the machine's, if node-exporter runs) from `start` to `end`,
        waiting for the scrape that covers `end` first."""
        poll_until(lambda: time.time() > end + 2 * float(prometheus.SCRAPE_INTERVAL.rstrip("s")), timeout=5,
                   interval=0.2)
        clients = {self.net.spec.client_of(n.org) for n in self.net.nodes}
        rows: list[dict] = []
        for client in sorted(clients):
            series = {}
            for field_name, (expr, factor) in QUERIES[client].items():
                series[field_name] = [r for r in self._range(node_query(expr), factor, start, end, step)
                                      if client_matches(self.net, r["metric"].get("node"), client)]
            rows += rows_from_series(series, "{node}", {"client": client})
        machine = {name: self._range(expr, factor, start, end, step) for name, (expr, factor) in MACHINE.items()}
        rows += rows_from_series(machine, "machine {instance}")
        return sorted(rows, key=lambda r: (r["time"], r["process"]))

    def start(self) -> "PrometheusResources":
        self.started = time.time()
        return self

    def stop(self) -> list[dict]:
        """The series since `start` (read once; later calls give nothing), then `close`."""
        try:
            if self.started is None:
                return []
            started, self.started = self.started, None
            return self.rows(started, time.time())
        finally:
            self.close()

    def close(self) -> None:
        if self.own:
            self.own = False
            prometheus.down(self.net)


def resolve(net, choice: str) -> str:
    """psutil, prometheus or none for `choice` (auto | psutil | prometheus | none) on `net`: auto is
    what the backend says (psutil for nodes that are processes of this machine, else prometheus),
    none when that is prometheus and it is not installed."""
    if choice not in RESOURCE_SOURCES:
        raise StateError(f"resources {choice!r}: one of {', '.join(RESOURCE_SOURCES)}")
    if choice == "auto":
        choice = net.backend.resource_source
        return "none" if choice == "prometheus" and not shutil.which("prometheus") else choice
    if choice == "psutil" and not net.backend.local_processes:
        raise StateError(f"resources: psutil samples processes of this machine; the nodes of {net.name!r} "
                         f"({net.spec.backend} backend) are not", hint="use 'monitor: prometheus' (or auto)")
    return choice


def samplers(net, choice: str, progress=lambda _: None) -> list:
    """The resource samplers of a run, started (`choice`: see `resolve`). With prometheus, this
    process (the generator) is still sampled with psutil. Each has `stop() -> rows` and `close()`."""
    choice = resolve(net, choice)
    if choice == "psutil":
        return [ResourceSampler(lambda: node_pids(net)).start()]
    if choice == "prometheus":
        source = PrometheusResources.open(net, progress).start()
        return [source, ResourceSampler(lambda: {"generator": os.getpid()}).start()]
    return []


def client_matches(net, node_name: str | None, client: str) -> bool:
    node = next((n for n in net.nodes if n.name == node_name), None)
    return node is not None and net.spec.client_of(node.org) == client
