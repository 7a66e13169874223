"""The Prometheus configuration of a network: one job per metrics path with every node labelled by
node and organization, the chain exporter, node-exporter when there is one; scraped every second."""

from __future__ import annotations

import json
from types import SimpleNamespace

from testbed.clients.base import NodePlan, NodePorts
from testbed.keys import KeyPair
from testbed.monitoring.prometheus import render_config


def test_jobs_targets_and_labels():
    nodes = [NodePlan(name=f"{org}-v1", org=org, role="validator", index=i, host="127.0.0.1",
                      ports=NodePorts.for_index(21000, i), key=KeyPair.generate())
             for i, org in enumerate(("acme", "globex"))]
    clients = {"acme": "goquorum", "globex": "besu"}
    net = SimpleNamespace(name="n", nodes=nodes, spec=SimpleNamespace(client_of=clients.get))
    config = json.loads(render_config(net, 9101, 9102))  # JSON is YAML: what Prometheus reads
    assert config["global"]["scrape_interval"] == "1s" and config["global"]["external_labels"] == {"network": "n"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    geth_family, besu = jobs["nodes_debug_metrics_prometheus"], jobs["nodes_metrics"]
    assert geth_family["metrics_path"] == "/debug/metrics/prometheus" and besu["metrics_path"] == "/metrics"
    assert geth_family["static_configs"] == [{"targets": ["127.0.0.1:21004"], "labels": {"node": "acme-v1", "org": "acme"}}]
    assert besu["static_configs"][0]["targets"] == ["127.0.0.1:21014"]
    assert jobs["testbed"]["static_configs"] == [{"targets": ["127.0.0.1:9101"]}]
    assert jobs["node_exporter"]["static_configs"] == [{"targets": ["127.0.0.1:9102"]}]
    assert "node_exporter" not in {j["job_name"] for j in json.loads(render_config(net, 9101, None))["scrape_configs"]}


def test_a_restarted_monitor_takes_its_ports_again_where_they_are_free(tmp_path):
    import socket

    from testbed.monitoring.prometheus import monitor_ports

    first = monitor_ports(tmp_path, ["prometheus", "exporter"])
    assert len(set(first.values())) == 2
    assert monitor_ports(tmp_path, ["prometheus", "exporter"]) == first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first["exporter"]))
        again = monitor_ports(tmp_path, ["prometheus", "exporter"])
    assert again["prometheus"] == first["prometheus"] and again["exporter"] != first["exporter"]
