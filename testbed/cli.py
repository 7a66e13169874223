"""The `testbed` command: parse, call the library, render with rich. Nothing else lives here; the
commands are in testbed/commands/, grouped by what they act on."""

from __future__ import annotations

from testbed.commands import chain, network, operations, runs  # noqa: F401  (each registers its commands)
from testbed.commands.common import app, run_app
from testbed.commands.network import render_status  # noqa: F401  (re-exported for callers of testbed.cli)

__all__ = ["app", "main", "run_app"]


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
