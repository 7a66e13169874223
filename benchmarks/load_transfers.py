"""Benchmark: value transfers on the four-org network (GoQuorum QBFT, or geth Clique with --client geth; 1 s blocks), nodes and load on one host.

    .venv/bin/python benchmarks/load_transfers.py [--client goquorum|geth] [--rates 300,400,...] [--step-seconds 20]
        [--sustain-seconds 60] [--geth-flag=--cache=1024 ...] [--workers N] [--out benchmarks/results/load_transfers.json]

1. steps the offered rate (testbed bench logic) until included/offered < 0.95, p95 > limit
   or disagreement: the highest passing step is the maximum sustainable rate;
2. holds that rate for --sustain-seconds (the >= 60 s target), and 80 % of it for 30 s
   (p95 at 80 % of max), each once every node's txpool is empty again (the backlog of the
   failed step is not charged to them; the wait is recorded, `drained_before_s`);
3. records, for every phase, offered vs target (generator tracking), included TPS from
   blocks, p50/p95/p99, CPU of each geth process and of the generator (psutil), and the
   block period under that load (blocks in the phase's window, mean interval, longest gap).
--geth-flag adds a flag to every geth command line (a lever experiment; a flag already on
the line is replaced), so flags can be compared without touching testbed/clients.
--workers N offers the load from a Locust master and N worker processes (distributed load).

Numbers depend on what else runs on the machine: the script records the load average.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402

from _common import (append_run, bench_parser, block_times, four_orgs_spec, head, host_and_network,  # noqa: E402
                     interval_figures, progress, stall_watchdog, tear_down, temporary_home, wait_drained)


def _with_geth_flags(extra: list[str]) -> None:
    """Wrap GethClient.command: replace or append `--name=value` flags."""
    from testbed.clients.geth import GethClient

    original = GethClient.command

    def command(self, *args, **kwargs):
        argv = list(original(self, *args, **kwargs))
        for flag in extra:
            name, _, value = flag.partition("=")
            if name in argv:  # already there as "--name value": replace the value
                i = argv.index(name)
                if value and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    argv[i + 1] = value
                continue
            argv.append(flag)  # geth takes --name=value for every flag, booleans included
        return argv

    GethClient.command = command


def main() -> None:
    parser = bench_parser(__doc__, rates="300,400,500,600,700,800,900,1000,1200", port_base=27200,
                          results="load_transfers.json")
    parser.add_argument("--sustain-seconds", type=float, default=60)
    parser.add_argument("--geth-flag", action="append", default=[])
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes (0: one load process)")
    args = parser.parse_args()

    home = temporary_home("bench-load-")
    if args.geth_flag:
        _with_geth_flags(args.geth_flag)

    from testbed.load.profiles import Constant
    from testbed.load.runner import BenchLimits, LoadOptions, bench, run_profile
    from testbed.network import Network
    from testbed.runs import RunDir

    spec = four_orgs_spec("bench-load", args.port_base, args.client)
    net = Network.create(spec, progress=progress)
    result: dict = {"label": args.label, "geth_flags": args.geth_flag, "locust_workers": args.workers,
                    **host_and_network(spec)}
    guard = stall_watchdog(net, args)
    try:
        opts = dict(batch_size=args.batch, per_user_rate=args.per_user_rate, workers=args.workers)
        run = RunDir.create(net.state.runs_dir, "bench")
        first_block, windows = head(net)[0], {}
        found = bench(net, run, [float(r) for r in args.rates.split(",")], LoadOptions(**opts),
                      BenchLimits(p95_limit_s=args.p95_limit, step_seconds=args.step_seconds), progress)
        result["steps"] = [_phase(s) for s in found["steps"]]
        windows.update({("steps", i): (s["start"], s["end"]) for i, s in enumerate(found["steps"])})
        result["stop_reason"] = found["stop_reason"]
        top = found["max_sustainable_target_tps"]
        result["max_sustainable"] = {"target_tps": top, "included_tps": found["max_sustainable_included_tps"]}
        if top:
            for name, rate, seconds in (("sustained_at_max", top, args.sustain_seconds), ("at_80_percent", 0.8 * top, 30)):
                drained = wait_drained(net)
                result.setdefault("drained_before_s", {})[name] = drained
                progress(f"{name}: {rate:g} tx/s for {seconds:g}s (txpools: {drained})")
                phase_run = RunDir.create(net.state.runs_dir, name.replace("_", "-"))
                figures = run_profile(net, phase_run, Constant(rate, seconds), LoadOptions(**opts), progress)
                result[name] = _phase(figures)
                windows[(name, None)] = (figures["start"], figures["end"])
                progress(f"{name}: {json.dumps(result[name]['summary'])}")
        stamps = block_times(net, first_block, head(net)[0])
        for (name, index), (start, end) in windows.items():  # the block period under each phase's load
            phase = result[name][index] if index is not None else result[name]
            phase["blocks"] = interval_figures(stamps, start, end)
        agreement = net.agreement(full=True)
        result["agreement"] = {"agreed": agreement.agreed, "summary": agreement.summary()}
    finally:
        result["interventions"] = guard.stop()
        tear_down(net, home, result)
    append_run(args.out, "load_transfers", result)  # every run is kept: one run is one sample


def _phase(f: dict) -> dict:
    target = f.get("target_tps")
    return {"summary": {
        "target_tps": target, "offered_tps": f["offered_tps"],
        "offered_vs_target": round(f["offered_tps"] / target, 3) if target else None,
        "included_tps_steady": f.get("included_tps_steady"), "included_ratio": f["included_ratio"],
        "p50_s": f["latency"]["p50_s"], "p95_s": f["latency"]["p95_s"], "p99_s": f["latency"]["p99_s"],
        "rejected": f["rejected"], "dropped": f["dropped"],
        "generator_cpu_percent": f["cpu"]["generator_percent"], "geth_cpu_percent_sum": f["cpu"]["nodes_percent"]},
        "per_process": f["cpu"]["per_process"], "submit_rpc_ms": f.get("submit_rpc_ms"),
        "agreement": f.get("agreement")}


if __name__ == "__main__":
    main()
