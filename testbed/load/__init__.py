"""Locust load for the testbed: chain users, rate shapes, block watcher, raw records.

Importing this package does nothing. Modules that import Locust (users, shapes, context,
runner, locustfile) monkey-patch the process with gevent as a side effect of importing
Locust, so only the load entry points import them: `testbed bench` (lazily, inside the
command), `locust -f testbed/load/locustfile.py`, and benchmarks/load_*.py. The pure
modules (profiles, accounts, records) import no Locust and are safe everywhere.
"""
