"""Load entry point process: `python -m testbed.load '<json request>'`.

gevent must monkey-patch before anything imports ssl, socket or threading, so Locust load
runs in its own process that patches first, here. `testbed bench` starts this process with
its parsed options as one JSON argument (an internal interface: the user-facing options
live in testbed/cli.py only) and waits for it; progress goes to stderr, the result is the
last stdout line as JSON.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    from pathlib import Path

    from testbed.errors import TestbedError
    from testbed.load.bench import run_bench, run_load
    from testbed.load.profiles import parse_profile
    from testbed.load.runner import BenchLimits, LoadOptions

    request = json.loads(argv[0])
    if request["command"] == "worker":  # a Locust worker of a distributed run: serves until its master quits
        from testbed.load.distributed import run_worker

        try:
            return run_worker(request["master"], _progress)
        except TestbedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    try:
        options = LoadOptions(**request.get("options", {}))
        if request["command"] == "bench":
            run_dir, result = run_bench(Path(request["spec"]) if request.get("spec") else None,
                                        network=request.get("network"), rates=request["rates"],
                                        limits=BenchLimits(**request.get("limits", {})), options=options,
                                        keep=request.get("keep", False), watchdog=request.get("watchdog", True),
                                        progress=_progress)
            ok = result["agreement"]["agreed"]
        elif request["command"] == "load":
            run_dir, result = run_load(request["network"], parse_profile(request["profile"]), options, _progress)
            ok = result["agreement"]["agreed"]
        else:
            raise ValueError(f"unknown command {request['command']!r}")
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps({"run_dir": str(run_dir), "result": result}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
