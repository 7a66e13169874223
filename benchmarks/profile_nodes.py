"""Where the CPU goes under transfer load: a CPU profile of every GoQuorum node (its pprof
endpoint) and of the load generator (py-spy), during a constant rate on the default network.

    .venv/bin/python benchmarks/profile_nodes.py [--rate 800] [--seconds 60] [--profile-seconds 20]
        [--label L] [--out benchmarks/results/node_profile.json]

The four-orgs GoQuorum QBFT network is started with `--pprof --pprof.addr 127.0.0.1
--pprof.port <metrics port + 5>` on every node (a local-only debug listener; the shipped
networks never open it). After a third of the run, every node is profiled for
--profile-seconds (`/debug/pprof/profile`) and the generator process with `py-spy record`
(when py-spy is installed: `pip install py-spy`; otherwise its share is only the psutil CPU).
Each node profile's samples (`go tool pprof -raw`) are attributed twice: the *work* (the
innermost frame outside the Go runtime: signature recovery, keccak, EVM, state and trie,
database, RLP, JSON, txpool, consensus, p2p; cgo calls count for their Go caller) and the
*activity* it serves (the first match along the whole stack: garbage collection, block
import, block building, txpool admission, transaction propagation, QBFT messages, JSON-RPC
serving, p2p transport, leveldb compaction). Writes both, with the per-process CPU of the load
phase, to benchmarks/results/node_profile.json; the .pprof files (and py-spy's collapsed
stacks) stay in benchmarks/results/profiles/<time>/ (git-ignored) for `go tool pprof -http`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import (ROOT, append_run, four_orgs_spec, host_and_network, progress, tear_down,  # noqa: E402
                     temporary_home)

PPROF_OFFSET = 5  # the node's pprof port: its metrics port + 5 (a node has 10 ports, 5 in use)

# What work a CPU sample is (its innermost frame that is not the Go runtime), by the first pattern
# the frame matches (go-ethereum package paths); cgo calls (runtime.cgocall) are attributed to the
# Go function that made them (libsecp256k1: signature recovery).
WORK = [
    ("signature recovery (secp256k1)", r"secp256k1|crypto\.Ecrecover|crypto\.SigToPub"),
    ("hashing (keccak)", r"sha3|keccak|crypto\.Keccak"),
    ("EVM", r"/core/vm\."),
    ("state and trie", r"/core/state|/trie\.|/triedb"),
    ("database (leveldb)", r"leveldb|pebble|/ethdb"),
    ("RLP", r"/rlp\."),
    ("JSON encoding", r"encoding/json|/rpc\."),
    ("txpool", r"/core/txpool|legacypool"),
    ("consensus (QBFT)", r"/consensus/"),
    ("p2p", r"/p2p|/eth/protocols|/eth/fetcher|snappy|^net\.|crypto/aes|crypto/cipher|crypto/hmac"),
    ("logging (every log call captures its caller, even Trace)", r"go-stack/stack|/log\."),
]
# Why the sample was taken (the activity it serves): the first of these, in this order, that any
# frame of its stack matches.
ACTIVITY = [
    ("garbage collection", r"^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge|gcAssistAlloc|markroot|scanobject)"),
    ("block import (execute and commit every block)",
     r"BlockChain\)\.(insertChain|InsertChain|writeBlockWithState)|StateProcessor|txSenderCacher"),
    ("block building (proposer)", r"/miner\."),
    ("txpool (admission: validate, recover sender; reorg after each block)",
     r"core\.\(\*TxPool\)|/core/txpool|legacypool"),
    ("transaction propagation", r"/eth/fetcher|BroadcastTransactions|handleTransactions|Transactions(Packet|Msg)|txBroadcastLoop|broadcastTransactions"),
    ("consensus (QBFT messages)", r"/consensus/"),
    ("JSON-RPC serving", r"/rpc\.|/internal/ethapi"),
    ("p2p transport", r"/p2p"),
    ("database (leveldb compaction)", r"leveldb"),
]
RUNTIME = re.compile(r"^(runtime[./]|internal/|syscall[./]|sync[./]|reflect\.|aeshashbody|memeqbody|gcWriteBarrier)")


def raw_samples(profile: Path) -> list[tuple[int, list[str]]]:
    """(CPU samples, stack of function names leaf first) from `go tool pprof -raw`."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("profile_nodes.py: `go` is not on PATH: it reads the node profiles (go tool pprof)")
    out = subprocess.run([go, "tool", "pprof", "-raw", str(profile)], capture_output=True, text=True, check=True).stdout
    samples_part, _, rest = out.partition("\nLocations\n")
    locations: dict[str, list[str]] = {}
    current = None
    for line in rest.split("\nMappings\n")[0].splitlines():
        head = re.match(r"^\s*(\d+): 0x[0-9a-f]+ M=\d+ (\S+)", line)
        if head:
            current = head.group(1)
            locations[current] = [head.group(2)]
        elif current and re.match(r"^\s+\S+ \S+:\d+", line):  # a further (inlined) function of the location
            locations[current].append(line.split()[0])
    samples = []
    for line in samples_part.splitlines():
        match = re.match(r"^\s*(\d+)\s+\d+: ([\d ]+)", line)
        if match:
            stack = [f for loc in match.group(2).split() for f in locations.get(loc, [])]
            samples.append((int(match.group(1)), stack))
    return samples


def _work(stack: list[str]) -> str:
    for frame in stack:
        if not RUNTIME.match(frame):
            return next((name for name, pattern in WORK if re.search(pattern, frame)), "other go-ethereum code")
    return "Go runtime (allocation, scheduling, GC)"


def _activity(stack: list[str]) -> str:
    return next((name for name, pattern in ACTIVITY if any(re.search(pattern, f) for f in stack)), "other")


def summarize_node(profile: Path) -> dict:
    samples = raw_samples(profile)
    total = sum(n for n, _ in samples) or 1
    work: Counter = Counter()
    activity: Counter = Counter()
    for count, stack in samples:
        work[_work(stack)] += count
        activity[_activity(stack)] += count
    return {"samples": total, "work_percent": {k: round(100 * v / total, 1) for k, v in work.most_common()},
            "activity_percent": {k: round(100 * v / total, 1) for k, v in activity.most_common()}}


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
    keep = args.out.parent / "profiles" / time.strftime("%Y%m%d-%H%M%S")  # for `go tool pprof -http` (git-ignored)
    keep.mkdir(parents=True)
    result["profiles"] = str(keep.relative_to(ROOT)) if keep.is_relative_to(ROOT) else str(keep)
    try:
        delay = args.seconds / 3
        for node in net.nodes:
            url = f"http://127.0.0.1:{node.ports.metrics + PPROF_OFFSET}/debug/pprof/profile?seconds={args.profile_seconds}"
            path = keep / f"{node.name}.pprof"
            captures.append((node.name, path, subprocess.Popen(
                ["bash", "-c", f'sleep {delay:.0f} && exec curl -sf -o "$1" "$2"', "capture", str(path), url])))
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if Path(spy).exists():
            raw = keep / "generator.txt"
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
                progress(f"{name}: work {result['nodes'][name]['work_percent']}")
                progress(f"{name}: activity {result['nodes'][name]['activity_percent']}")
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
