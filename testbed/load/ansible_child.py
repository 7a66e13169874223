"""The child process that starts or stops Locust workers on an ansible network's member hosts
(testbed.backends.ansible_workers), outside the gevent-patched master: ansible-runner hangs
under gevent. Run as `python -m testbed.load.ansible_child REQUEST_JSON`; prints a JSON answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from testbed.backends.ansible_workers import start, stop
from testbed.errors import StateError, TestbedError
from testbed.network import Network


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    try:
        net = Network.load(request["network"])
        if request["action"] == "start":
            pids = start(net, request["master"], request["count"], python=request.get("python", ""),
                         package=request.get("package", ""))
            print(json.dumps({"pids": pids}))
        elif request["action"] == "stop":
            stop(net, Path(request["log_dest"]))
            print(json.dumps({"stopped": True}))
        else:
            raise StateError(f"unknown action {request['action']!r}: start or stop")
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
