"""QBFT at 4, 8 and 16 organizations across a slow WAN: block period, included transfers and
agreement, and the consensus cost per block, on the netns backend (needs root).

    .venv/bin/python benchmarks/scale_wan.py [--orgs 4,8,16] [--rate 250] [--load-seconds 60]
        [--idle-seconds 30] [--rtt-ms 50-150] [--label L] [--out benchmarks/results/scale_wan.json]

For each size N: the first N organizations of scenarios/networks/sixteen-orgs.yaml (GoQuorum
QBFT, one validator each), 1 s blocks, each in its own network namespace, no Solvers (this
measures consensus and transfers). Every organization's outgoing packets are held back by the
link delayer (testbed/backends/nfqueue_delay.py: this kernel has no tc netem): organization i
of N waits lo + (hi - lo) * i / (N - 1) / 2 ms, so the round trip between two organizations,
the sum of their two delays, lies between the --rtt-ms bounds (50-150 ms by default).
Then, one after the other:
  idle  --idle-seconds without transactions: mean block interval, and the CPU every node
        process used per block (psutil), which is the consensus cost (QBFT's messages per
        block grow with the square of the validators); the link delayers' CPU beside it
        (they share this machine: on a real WAN the delay costs nothing);
  load  a constant --rate of transfers for --load-seconds (the harness's Locust load):
        offered and included tx/s, p95 submit->inclusion, mean block interval under load;
then full agreement over every height. Appends the run to benchmarks/results/scale_wan.json.
Fit and model: benchmarks/summarize.py and docs/performance.md.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import (ROOT, NETWORKS, append_run, block_times, head, host_and_network, interval_figures,  # noqa: E402
                     progress, tear_down, temporary_home)


def scaled_spec(orgs: int, port_base: int):
    """The first `orgs` organizations of the shipped sixteen-orgs network, on the netns backend,
    1 s blocks, no Solvers."""
    from testbed.spec import load_network_spec

    shipped = load_network_spec(NETWORKS / "sixteen-orgs.yaml")
    data = shipped.model_dump()
    data["name"], data["backend"], data["ports"]["base"] = f"wan-{orgs}", "netns", port_base
    data["consensus"]["block_period"] = 1
    data["organizations"] = [{**org, "solver": False} for org in data["organizations"][:orgs]]
    return type(shipped).model_validate(data)


def one_way_delays(orgs: int, rtt_low: int, rtt_high: int) -> list[int]:
    """Per organization, the delay on its outgoing packets (ms): pairwise sums span the RTT bounds."""
    if orgs == 1:
        return [rtt_low // 2]
    return [round((rtt_low + (rtt_high - rtt_low) * i / (orgs - 1)) / 2) for i in range(orgs)]


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def node_pids_of(net) -> list[int]:
    from testbed.resources import node_pids

    return [pid for name, pid in node_pids(net).items() if name != "generator"]


def delayer_pids_of(net) -> list[int]:
    """The link delayers' pids (NFQUEUE delayers; none where tc netem does the delaying)."""
    return [rule["pid"] for rule in net.backend.record.get("rules", []) if rule.get("kind") == "nfqueue" and rule.get("pid")]


def measure_size(orgs: int, args) -> dict:
    from testbed.load.profiles import Constant
    from testbed.load.runner import LoadOptions, run_profile
    from testbed.network import Network
    from testbed.runs import RunDir

    home = temporary_home(f"bench-wan{orgs}-")
    spec = scaled_spec(orgs, args.port_base)
    result: dict = {"orgs": orgs, **host_and_network(spec)}
    net = None
    try:
        started = time.monotonic()
        net = Network.create(spec, progress=progress)
        result["startup_s"] = round(time.monotonic() - started, 2)
        delays = one_way_delays(orgs, args.rtt_low, args.rtt_high)
        for org, delay in zip(spec.organizations, delays):
            net.backend.delay(org.name, delay)
        result["one_way_delay_ms"] = delays
        progress(f"{orgs} orgs: delays {delays[0]}-{delays[-1]} ms one way; idle {args.idle_seconds:g}s")
        time.sleep(5)  # the first blocks after the delays start
        nodes, delayers = node_pids_of(net), delayer_pids_of(net)
        n0, _, cpu0, lag0 = *head(net), cpu_seconds(nodes), cpu_seconds(delayers)
        time.sleep(args.idle_seconds)
        n1, _, cpu1, lag1 = *head(net), cpu_seconds(nodes), cpu_seconds(delayers)
        blocks = max(n1 - n0, 1)
        result["idle"] = {"blocks": n1 - n0, "mean_interval_s": round(args.idle_seconds / blocks, 3),
                          "node_cpu_s_per_block": round((cpu1 - cpu0) / blocks, 4),
                          "node_cpu_percent_of_machine": round(100 * (cpu1 - cpu0) / args.idle_seconds / args.cpus, 1),
                          "delayers_cpu_percent_of_machine": round(100 * (lag1 - lag0) / args.idle_seconds / args.cpus, 1)}
        progress(f"{orgs} orgs idle: {result['idle']}")
        run = RunDir.create(net.state.runs_dir, "wan")
        n0, _, lag0, started = *head(net), cpu_seconds(delayers), time.monotonic()
        figures = run_profile(net, run, Constant(args.rate, args.load_seconds),
                              LoadOptions(batch_size=50, per_user_rate=50.0), progress)
        n1, _, lag1, seconds = *head(net), cpu_seconds(delayers), time.monotonic() - started
        result["load"] = {"target_tps": args.rate, "offered_tps": figures["offered_tps"],
                          "included_tps_steady": figures.get("included_tps_steady"),
                          "included_ratio": figures["included_ratio"], "p95_s": figures["latency"]["p95_s"],
                          **interval_figures(block_times(net, n0, n1), figures["start"], figures["end"]),
                          "delayers_cpu_percent_of_machine": round(100 * (lag1 - lag0) / seconds / args.cpus, 1),
                          "cpu_percent": figures["cpu"]["per_process"]}
        progress(f"{orgs} orgs load: " + ", ".join(f"{k} {v}" for k, v in result["load"].items() if k != "cpu_percent"))
        agreement = net.agreement(full=True)
        result["agreement"] = {"agreed": agreement.agreed, "summary": agreement.summary()}
    except Exception as exc:  # noqa: BLE001 - one size failing is a result to keep (and the next size still runs)
        result["error"] = f"{exc.__class__.__name__}: {exc}"
        progress(f"{orgs} orgs: {result['error']}")
    finally:
        if net is not None:
            tear_down(net, home, result)
    return result


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", default="4,8,16")
    parser.add_argument("--rate", type=float, default=250)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--rtt-ms", default="50-150")
    parser.add_argument("--port-base", type=int, default=28000)
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_wan.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("scale_wan.py: the netns backend needs root (network namespaces, iptables)")
    try:
        args.rtt_low, args.rtt_high = (int(x) for x in args.rtt_ms.split("-"))
        sizes = [int(x) for x in args.orgs.split(",")]
    except ValueError:
        raise SystemExit("scale_wan.py: --rtt-ms is LOW-HIGH in ms (e.g. 50-150), --orgs a list (e.g. 4,8,16)") from None
    if not all(1 <= n <= 16 for n in sizes):
        raise SystemExit("scale_wan.py: --orgs sizes are 1..16 (the organizations of sixteen-orgs.yaml)")
    args.cpus = os.cpu_count() or 1
    sizes_done = [measure_size(n, args) for n in sizes]
    append_run(args.out, "scale_wan", {"label": args.label, "rtt_ms": [args.rtt_low, args.rtt_high],
                                       "rate": args.rate, "sizes": sizes_done})


if __name__ == "__main__":
    main()
