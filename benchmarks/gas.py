"""Gas used per CTI operation, measured on the in-process py-evm chain (eth-tester).

    .venv/bin/python benchmarks/gas.py   # writes benchmarks/results/gas.json

Each figure is the receipt's gasUsed of one transaction in a fixed scenario (three orgs,
acme publishes, bravo consumes). "first" vs "again" show cold vs warm storage where the
difference matters. Compare with the original design in docs/contracts.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.cti import Role  # noqa: E402
from tests.unit.helpers_cti import TIMEOUT, address_for, build_world, content_hash  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "gas.json"
EXCHANGE = "exchange (buy + request + accept + finish, warm)"
EXCHANGE_2 = "exchange in two calls (buyAndRequest + deliver, warm)"


def measure() -> dict:
    w = build_world()
    pub, sol, con, ccon = (w.client(x, estimate=True) for x in ("acme.pub", "acme.sol", "bravo.con", "cyber.con"))
    gas: dict[str, int] = {f"deploy {n}": r.gas_used for n, r in w.deployment.contracts.items()}
    g = lambda name, sent: gas.__setitem__(name, sent.gas_used) or sent  # noqa: E731
    tok = g("publish (first listing, supply 100, 1 solver)",
            pub.publish("b7a1c0de-0000-4000-8000-000000000001", "APT-X C2 domains", content_hash("a"),
                        10**15, 100, [sol.address])).result
    g("publish (again)", pub.publish("b7a1c0de-0000-4000-8000-000000000002", "Phishing kit", content_hash("b"),
                                     10**15, 100, [sol.address]))
    g("mint", pub.mint(tok, 10))
    g("modify", pub.modify(tok, "APT-X C2 domains v2", 2 * 10**15))
    g("setSolver", pub.set_solver(tok, sol.address, True))
    g("buy 1 (first purchase by the org)", con.buy(tok, 1))
    g("buy 1 (again)", con.buy(tok, 1))
    g("buy 1 with change refunded", con.buy(tok, 1, value=3 * 10**15))
    g("buy 5", con.buy(tok, 5))
    t1 = g("request (first)", con.request(tok, b"\x02" + bytes(32))).result
    g("accept (first)", sol.accept(t1))
    g("finish (first)", sol.finish(t1, content_hash("r1"), "https://acme.example/r/1"))
    g("rate (first)", con.rate(t1, 5, "useful"))
    t2 = g("request (again)", con.request(tok, b"\x02" + bytes(32))).result
    g("accept (again)", sol.accept(t2))
    g("finish (again)", sol.finish(t2, content_hash("r2"), "https://acme.example/r/2"))
    g("rate (again)", con.rate(t2, 4))
    con.buy_and_request(tok, b"\x02" + bytes(32))  # the first one warms the function's own code paths
    t6 = g("buyAndRequest (again)", con.buy_and_request(tok, b"\x02" + bytes(32))).result
    g("deliver (again)", sol.deliver(t6, content_hash("r6"), "https://acme.example/r/6"))
    t3 = con.request(tok, b"\x02" + bytes(32)).result
    g("cancel", con.cancel(t3))
    t4 = con.request(tok, b"\x02" + bytes(32)).result
    g("reject", sol.reject(t4, "MISP event not found"))
    t5 = con.request(tok, b"\x02" + bytes(32)).result
    sol.accept(t5)
    w.chain.advance(TIMEOUT + 1)
    g("expire", con.expire(t5))
    g("like", con.like(tok))
    g("withdrawProceeds", pub.withdraw_proceeds())
    g("withdrawListing", pub.withdraw_listing(2))
    prop = g("proposeAdmission (1 account)",
             pub.propose_admission("delta", [address_for("newcomer")], [int(Role.ALL)])).result
    g("vote (passes, admits)", w.client("cyber.con", estimate=True).vote(prop, True))
    prop = g("proposeRemoval", pub.propose_removal(4)).result
    g("vote (no majority yet)", ccon.vote(prop, False))
    exchange = sum(gas[k] for k in ("buy 1 (again)", "request (again)", "accept (again)", "finish (again)"))
    return {"unit": "gas", "chain": "eth-tester py-evm, solc 0.8.28 optimizer 200 runs, evmVersion london",
            "compiler": w.deployment.compiler_version, "source_hash": w.deployment.source_hash,
            "commit": _commit(), "date": datetime.now(UTC).date().isoformat(), "operations": gas,
            EXCHANGE: exchange, "one use (buy + request + accept + finish + rate, warm)": exchange + gas["rate (again)"],
            EXCHANGE_2: gas["buyAndRequest (again)"] + gas["deliver (again)"]}


def _commit() -> str | None:
    """The checked-out commit (with '+changes' when the tree differs from it), None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=OUT.parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "contracts/src"], capture_output=True,
                               text=True, check=True, cwd=OUT.parent.parent.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    out = parser.parse_args(argv).out
    result = measure()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result["operations"]))
    for name, used in result["operations"].items():
        print(f"{name:<{width}}  {used:>9,}")
    print(f"one CTI exchange, warm: {result[EXCHANGE]:,} gas (with the rating: "
          f"{result['one use (buy + request + accept + finish + rate, warm)']:,})")
    print(f"the same exchange in two calls (buyAndRequest + deliver): {result[EXCHANGE_2]:,} gas")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
