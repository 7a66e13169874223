"""Testbed and orchestration harness for a consortium CTI-sharing permissioned Ethereum network."""

__version__ = "0.1.0"
