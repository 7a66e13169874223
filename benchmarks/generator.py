"""Generator headroom: how many signed transactions a second the load generator offers from one
core when the endpoint answers at once, so it is never what limits a network figure.

    .venv/bin/python benchmarks/generator.py [--rates 2000,4000,6000,8000] [--step-seconds 10] [--label L]

The endpoint is a benchmark stub, not a node (`--stub PORT` runs it; this script starts it as its
own process): an aiohttp JSON-RPC server that answers eth_sendRawTransaction batches with each
transaction's keccak hash and, once a second, "mines" a block holding every transaction it took
in that second, so the generator's inclusion bookkeeping runs too. The generator is the real one:
the Locust TransferUsers of testbed/load/users.py in a LoadContext (block watcher, head and
resource samplers, textfile metrics), pre-signing with TxSigner before each step, as in `testbed
bench`. Per step: offered tx/s (sent in the window), included tx/s (found in the stub's blocks),
the generator process's CPU (100 = one core), signing throughput of the pre-sign phase.
Appends the run to benchmarks/results/generator.json.
"""

from __future__ import annotations

import sys

if "--stub" not in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, append_run, progress  # noqa: E402

CHAIN_ID = 1337
ORGS = ("acme", "globex", "initech", "umbrella")


# ---- the stub endpoint (its own process, no gevent) --------------------------------------------

def run_stub(port: int) -> None:
    from aiohttp import web
    from eth_hash.auto import keccak

    t0 = time.time()
    blocks: dict[int, list[str]] = {}

    def number_now() -> int:
        return int(time.time() - t0)

    def block(n: int) -> dict:
        return {"number": hex(n), "hash": "0x%064x" % (n + 1), "parentHash": "0x%064x" % n, "timestamp": hex(int(t0) + n),
                "transactions": blocks.get(n, []), "gasUsed": hex(21000 * len(blocks.get(n, [])))}

    def answer(call: dict) -> dict:
        method, params = call.get("method"), call.get("params") or []
        if method == "eth_sendRawTransaction":
            tx_hash = "0x" + keccak(bytes.fromhex(params[0][2:])).hex()
            blocks.setdefault(number_now() + 1, []).append(tx_hash)  # in the next block
            result = tx_hash
        elif method == "eth_blockNumber":
            result = hex(number_now())
        elif method == "eth_getBlockByNumber":
            n = int(params[0], 16)
            result = block(n) if n <= number_now() else None
        elif method == "eth_chainId":
            result = hex(CHAIN_ID)
        elif method == "eth_getTransactionCount":
            result = "0x0"
        else:
            result = None
        return {"jsonrpc": "2.0", "id": call.get("id"), "result": result}

    async def handle(request):
        body = await request.json(loads=json.loads)
        out = [answer(c) for c in body] if isinstance(body, list) else answer(body)
        return web.json_response(out)

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the generator --------------------------------------------------------------------------

def stub_network(url: str, state_root: Path):
    """What the load context reads of a Network: its nodes, organizations, recipients, state dir."""
    from testbed.load.accounts import new_account

    nodes = [SimpleNamespace(name=f"{org}-v1", org=org, rpc_url=url) for org in ORGS]
    recipients = {org: [new_account(org, f"{org}-v1", url, CHAIN_ID)] for org in ORGS}
    return SimpleNamespace(name="generator-stub", nodes=nodes, members=[SimpleNamespace(name=o) for o in ORGS],
                           keys=SimpleNamespace(accounts=recipients),
                           state=SimpleNamespace(root=state_root, read_pid=lambda name: None))


def measure(url: str, rates: list[float], step_seconds: float, batch: int, per_user_rate: float) -> dict:
    import gevent
    import psutil
    from locust.env import Environment

    from testbed.chain.txs import TxSigner
    from testbed.load.accounts import new_account
    from testbed.load.context import LoadContext, presign
    from testbed.load.profiles import users_for_rate
    from testbed.load.runner import InProcess
    from testbed.load.shapes import ControlledShape
    from testbed.load.users import TransferUser
    from testbed.poll import poll_until

    signer = TxSigner("0x" + "42" * 32, chain_id=CHAIN_ID)
    to = signer.address
    started = time.perf_counter()
    for nonce in range(20_000):
        signer.sign(nonce, to)
    sign_rate = 20_000 / (time.perf_counter() - started)
    progress(f"TxSigner alone: {sign_rate:,.0f} transfers signed a second")

    me = psutil.Process()
    net = stub_network(url, Path(tempfile.mkdtemp(prefix="generator-bench-")))
    users = users_for_rate(max(rates), per_user_rate, 10**6)
    per_org = -(-users // len(ORGS))
    accounts = {org: [new_account(org, f"{org}-v1", url, CHAIN_ID) for _ in range(per_org)] for org in ORGS}
    shape = ControlledShape(0.0)
    env = Environment(user_classes=[TransferUser], shape_class=shape, stop_timeout=10)
    ctx = LoadContext.attach(env, net, accounts, batch_size=batch, per_user_rate=per_user_rate, poll_interval=0.1)
    env.create_local_runner()
    ctx.generators = InProcess(ctx)
    ctx.start()
    env.runner.start_shape()
    steps = []
    try:
        for rate in rates:
            signing = presign(ctx, rate, step_seconds + 2)
            signed = int(rate * (step_seconds + 2))
            shape.rate, ctx.target_rate = rate, rate
            wanted = users_for_rate(rate, ctx.per_user_rate, ctx.max_users, ctx.min_users)
            poll_until(lambda: env.runner.user_count == wanted, timeout=10, interval=0.05, sleep=gevent.sleep)
            gevent.sleep(1.0)  # users spread over their pacing interval
            late_before, cpu_before, t0 = ctx.signed_late(), sum(me.cpu_times()[:2]), time.time()
            gevent.sleep(step_seconds)
            t1, cpu_after = time.time(), sum(me.cpu_times()[:2])
            shape.rate, ctx.target_rate = 0.0, 0.0
            gevent.sleep(2.5)  # the stub's next blocks hold the last batches
            window = [r for r in ctx.recorder.rows if t0 <= r.submit_time < t1]
            step = {"target_tps": rate, "users": wanted,
                    "offered_tps": round(len(window) / (t1 - t0), 1),
                    "included_tps": round(sum(r.status == "included" for r in window) / (t1 - t0), 1),
                    "generator_cpu_percent": round((cpu_after - cpu_before) / (t1 - t0) * 100, 1),
                    "signed_while_sending": ctx.signed_late() - late_before,
                    "presign_s": round(signing, 3), "presign_tx_per_s": round(signed / signing, 1) if signing else None}
            progress(f"target {rate:g}: offered {step['offered_tps']:,.0f} tx/s, included {step['included_tps']:,.0f}, "
                     f"generator CPU {step['generator_cpu_percent']:.0f} %, presign {signing:.1f} s")
            steps.append(step)
    finally:
        shape.rate = None
        env.runner.stop()
        ctx.stop()
        env.runner.quit()
    return {"sign_transfers_per_s": round(sign_rate, 1), "steps": steps,
            "max_offered_tps": max((s["offered_tps"] for s in steps if s["offered_tps"] >= 0.97 * s["target_tps"]),
                                   default=None)}


def main() -> int:
    if "--stub" in sys.argv:
        run_stub(int(sys.argv[sys.argv.index("--stub") + 1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2000,4000,6000,8000")
    parser.add_argument("--step-seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--per-user-rate", type=float, default=50.0)
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generator.json")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    port = free_port()
    stub = subprocess.Popen([sys.executable, __file__, "--stub", str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        from testbed.chain.rpc import RpcClient
        from testbed.poll import poll_until

        def answers() -> bool:
            try:
                with RpcClient(url, timeout=1) as rpc:
                    return rpc.call("eth_chainId") == hex(CHAIN_ID)
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        if not poll_until(answers, timeout=20, interval=0.2):
            progress("the stub endpoint did not start")
            return 1
        import psutil

        result = {"label": args.label, "host": {"cpus": psutil.cpu_count(), "loadavg_before": os.getloadavg()},
                  "batch": args.batch, "per_user_rate": args.per_user_rate, "step_seconds": args.step_seconds,
                  **measure(url, rates, args.step_seconds, args.batch, args.per_user_rate)}
        result["host"]["loadavg_after"] = os.getloadavg()
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    append_run(args.out, "generator", result)
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
