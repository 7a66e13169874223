"""Where the CPU goes under transfer load: a CPU profile of every GoQuorum node (its pprof
endpoint) and of the load generator (py-spy), during a constant rate on the default network.

    .venv/bin/python benchmarks/profile_nodes.py [--rate 800] [--seconds 60] [--profile-seconds 20]
        [--label L] [--out benchmarks/results/node_profile.json]

The four-orgs GoQuorum QBFT network is started with `--pprof --pprof.addr 127.0.0.1
--pprof.port <metrics port + 5>` on every node (a local-only debug listener; the shipped
networks never open it). After a third of the run, every node is profiled for
--profile-seconds (`/debug/pprof/profile`) and the generator process with `py-spy record`
(when py-spy is installed: `pip install py-spy`; otherwise its share is only the psutil CPU).
Each node profile is reduced by `go tool pprof -top` to flat CPU per function and grouped
into what the node spends it on (EVM, state and trie, signature recovery, hashing, RLP,
txpool, consensus, p2p, JSON-RPC, database, Go runtime and GC). Writes the shares, the top
functions and the per-process CPU of the load phase to benchmarks/results/node_profile.json
(the .pprof files stay in the run's temporary home and go with it).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import (ROOT, append_run, four_orgs_spec, host_and_network, progress, tear_down,  # noqa: E402
                     temporary_home)

PPROF_OFFSET = 5  # the node's pprof port: its metrics port + 5 (a node has 10 ports, 5 in use)

# What a function is spent on, by the first pattern its name matches (go-ethereum package paths).
CATEGORIES = [
    ("signature recovery", r"secp256k1|crypto\.Ecrecover|crypto\.SigToPub|types\.Sender|Signer\)\.Sender"),
    ("hashing (keccak)", r"sha3|keccak|crypto\.Keccak"),
    ("EVM", r"/core/vm\."),
    ("state and trie", r"/core/state|/trie\.|/triedb"),
    ("database", r"leveldb|pebble|/ethdb"),
    ("RLP", r"/rlp\."),
    ("txpool", r"/core/txpool|legacypool|tx_pool|txpool"),
    ("consensus (QBFT)", r"/consensus/"),
    ("p2p and propagation", r"/p2p|/eth/protocols|/eth/fetcher|/eth\.\(\*handler|snappy"),
    ("JSON-RPC", r"/rpc\.|encoding/json|/internal/ethapi|net/http"),
    ("block processing", r"/core\.|/core/types|/miner"),
    ("Go runtime and GC", r"^runtime\.|^runtime/|^sync\.|^syscall\.|^internal/"),
]
TOP_LINE = re.compile(r"^\s*([\d.]+)(\w*)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)(\w*)\s+([\d.]+)%\s+(.+)$")


def category(function: str) -> str:
    return next((name for name, pattern in CATEGORIES if re.search(pattern, function)), "other")


def pprof_top(profile: Path) -> list[tuple[str, float]]:
    """(function, flat % of the profile's samples), from `go tool pprof -top`."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("profile_nodes.py: `go` is not on PATH: it reads the node profiles (go tool pprof)")
    out = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=100000", str(profile)],
                         capture_output=True, text=True, check=True).stdout
    return [(m.group(8).strip(), float(m.group(3))) for m in map(TOP_LINE.match, out.splitlines()) if m]


def summarize_node(profile: Path) -> dict:
    rows = pprof_top(profile)
    shares: Counter = Counter()
    for function, flat in rows:
        shares[category(function)] += flat
    return {"categories_percent": {k: round(v, 1) for k, v in shares.most_common()},
            "top_functions": [{"function": f, "flat_percent": p} for f, p in rows[:15]]}


def summarize_generator(raw: Path) -> dict:
    """py-spy's raw (collapsed stacks) output: the share of samples whose innermost frames are in
    signing, JSON/HTTP, gevent/Locust or elsewhere."""
    leaves: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        leaves[_generator_part(stack)] += int(count)
    return {"samples": total, "parts_percent": {k: round(100 * v / total, 1) for k, v in leaves.most_common()} if total else {}}


def _generator_part(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for part, words in (("signing", ("txs.py", "coincurve", "rlp")),
                            ("JSON-RPC client (requests, json)", ("requests/", "urllib3", "json/", "http/client")),
                            ("inclusion tracking", ("inclusion.py", "records.py", "recorder")),
                            ("Locust and gevent", ("locust/", "gevent/", "greenlet"))):
            if any(w in frame for w in words):
                return part
    return "other"


def _with_pprof() -> None:
    """Every GoQuorum node of this process's networks gets a pprof listener on 127.0.0.1."""
    from testbed.clients.goquorum import GoQuorumClient

    original = GoQuorumClient.command

    def command(self, binary, spec, node, *args, **kwargs):
        return [*original(self, binary, spec, node, *args, **kwargs), "--pprof", "--pprof.addr", "127.0.0.1",
                "--pprof.port", str(node.ports.metrics + PPROF_OFFSET)]

    GoQuorumClient.command = command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=800)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--port-base", type=int, default=27600)
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "node_profile.json")
    args = parser.parse_args()
    if args.profile_seconds >= args.seconds * 2 / 3:
        raise SystemExit("profile_nodes.py: --profile-seconds must fit in the last two thirds of --seconds")

    home = temporary_home("bench-profile-")
    _with_pprof()
    from testbed.load.profiles import Constant
    from testbed.load.runner import LoadOptions, run_profile
    from testbed.network import Network
    from testbed.runs import RunDir

    spec = four_orgs_spec("bench-profile", args.port_base)
    net = Network.create(spec, progress=progress)
    result: dict = {"label": args.label, "rate": args.rate, "seconds": args.seconds,
                    "profile_seconds": args.profile_seconds, **host_and_network(spec)}
    captures: list[tuple[str, Path, subprocess.Popen]] = []
    try:
        delay = args.seconds / 3
        for node in net.nodes:
            url = f"http://127.0.0.1:{node.ports.metrics + PPROF_OFFSET}/debug/pprof/profile?seconds={args.profile_seconds}"
            path = home / f"{node.name}.pprof"
            captures.append((node.name, path, subprocess.Popen(
                ["bash", "-c", f'sleep {delay:.0f} && exec curl -sf -o "$1" "$2"', "capture", str(path), url])))
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if Path(spy).exists():
            raw = home / "generator.txt"
            captures.append(("generator", raw, subprocess.Popen(
                ["bash", "-c", f'sleep {delay:.0f} && exec "$1" record --pid "$2" --duration "$3" --format raw '
                 f'--rate 200 --nonblocking -o "$4"', "capture", spy, str(os.getpid()), str(args.profile_seconds),
                 str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        else:
            result["generator_profile"] = "py-spy not installed (pip install py-spy): generator CPU from psutil only"
        run = RunDir.create(net.state.runs_dir, "profile")
        progress(f"{args.rate:g} tx/s for {args.seconds:g}s; profiles from {delay:.0f}s for {args.profile_seconds}s")
        figures = run_profile(net, run, Constant(args.rate, args.seconds), LoadOptions(batch_size=50, per_user_rate=50.0),
                              progress)
        result["load"] = {"offered_tps": figures["offered_tps"], "included_tps_steady": figures.get("included_tps_steady"),
                          "p95_s": figures["latency"]["p95_s"], "cpu_percent": figures["cpu"]["per_process"]}
        result["nodes"] = {}
        for name, path, proc in captures:
            proc.wait(timeout=args.profile_seconds + 30)
            if name == "generator":
                result["generator_profile"] = summarize_generator(path) if path.exists() else "py-spy wrote nothing"
            elif path.exists() and path.stat().st_size:
                result["nodes"][name] = summarize_node(path)
                progress(f"{name}: {result['nodes'][name]['categories_percent']}")
            else:
                result["nodes"][name] = {"error": f"no profile from the node's pprof endpoint (curl exited {proc.returncode})"}
    finally:
        for _, _, proc in captures:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        tear_down(net, home, result)
    append_run(args.out, "node_profile", result)


if __name__ == "__main__":
    main()
