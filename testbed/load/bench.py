"""`testbed bench`: bring up (or use) a network, step the offered rate, write JSON and the report.

A load entry point (imports runner, hence Locust and gevent): import it lazily.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from testbed.load.runner import BenchLimits, LoadOptions, bench, run_profile
from testbed.load.profiles import Profile
from testbed.network import Network
from testbed.report import render
from testbed.runs import RunDir
from testbed.spec import load_network_spec
from testbed.watchdog import StallWatchdog

Progress = Callable[[str], None]


def _open_network(spec_path: Path | None, network: str | None, progress: Progress) -> tuple[Network, bool]:
    if network:
        net = Network.load(network)
        missing = [n.name for n in net.nodes if not net.process(n.name)]
        if missing:
            from testbed.errors import StateError
            raise StateError(f"network {network!r} has nodes down: {', '.join(missing)}",
                             hint=f"'testbed start --network {network}' or bench a spec instead")
        return net, False
    spec = load_network_spec(spec_path)
    return Network.create(spec, source=str(spec_path), progress=progress), True


def _conclude(net: Network, run: RunDir, progress: Progress) -> dict:
    agreement = net.agreement(full=True)
    verdict = {"agreed": agreement.agreed, "summary": agreement.summary(), "common_height": agreement.common_height,
               "divergences": [vars(d) for d in agreement.divergences], "unreachable": list(agreement.unreachable)}
    run.write_json("agreement.json", verdict)
    progress(f"agreement over every block: {agreement.summary()}")
    return verdict


def run_bench(spec_path: Path | None, *, network: str | None, rates: list[float], limits: BenchLimits,
              options: LoadOptions, keep: bool, progress: Progress, watchdog: bool = True) -> tuple[Path, dict]:
    net, created = _open_network(spec_path, network, progress)
    run = RunDir.create(net.state.runs_dir, "bench")
    try:
        run.write_json("spec.json", net.spec.model_dump())
        run.event("bench_started", rates=rates)
        progress(f"bench on {net.name!r}: steps {', '.join(f'{r:g}' for r in rates)} tx/s, "
                 f"{limits.step_seconds:g}s each; run dir {run.root}")
        with StallWatchdog(net, record=run.event, progress=progress, enabled=watchdog) as guard:
            result = bench(net, run, rates, options, limits, progress)
        verdict = _conclude(net, run, progress)
        result["agreement"] = verdict
        result["interventions"] = guard.interventions
        run.write_json("bench.json", result)
        run.set_status("passed" if verdict["agreed"] and result["steps"] else "failed")
        render(run.root)
        return run.root, result
    except BaseException as exc:
        run.set_status("error", error=str(exc))
        raise
    finally:
        if created and not keep:
            progress(f"tearing down {net.name!r}")
            net.down()


def run_load(network: str, profile: Profile, options: LoadOptions, progress: Progress) -> tuple[Path, dict]:
    """One profile against a running network (scenario load phases use this)."""
    net, _ = _open_network(None, network, progress)
    run = RunDir.create(net.state.runs_dir, "load")
    try:
        run.write_json("spec.json", net.spec.model_dump())
        started = time.time()
        figures = run_profile(net, run, profile, options, progress)
        figures["agreement"] = _conclude(net, run, progress)
        run.set_status("passed" if figures["agreement"]["agreed"] else "failed", seconds=round(time.time() - started, 1))
        render(run.root)
        return run.root, figures
    except BaseException as exc:
        run.set_status("error", error=str(exc))
        raise
