"""Live metrics in Prometheus: a Prometheus server (the Debian package `prometheus`) scraping
every node's metrics endpoint, the testbed's chain exporter and, where installed,
prometheus-node-exporter. `testbed monitor up|down|status`; see docs/monitoring.md."""
