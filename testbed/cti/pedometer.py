"""The consortium's pedometer, read from the chain at one block.

    reading = read_pedometer(w3, deployment, block=head, since=start_block, names=account_names)
    reading["organizations"]   # per org: every Activity counter at `block` (and at `since`)
    reading["mismatches"]      # counters that differ from the Step events summed (should be [])
    reading["tasks"]           # per task touched since `since`: request -> accept -> finish -> verdict

The counters are the contract's (`Activity.countsOf`); the same figures are recomputed from
the `Step` events up to the same block, so a counter that does not match its events is found
when the report is built. The task timeline comes from the same events: each carries the task
id, the kind of step and the account that took it (the Solver for accepted and solved).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from web3 import Web3

from testbed.cti.client import bind
from testbed.cti.deploy import Deployment
from testbed.cti.model import Kind

LOG_WINDOW = 5_000  # blocks per eth_getLogs query
KINDS = [k.name.lower() for k in Kind]
# the step that closes a task, by kind: what the task's timeline calls it
CLOSING = {Kind.SOLVED: "finished", Kind.CANCELLED: "cancelled", Kind.EXPIRED: "expired", Kind.REJECTED: "rejected"}
VERDICTS = {Kind.FEEDBACK_GIVEN: "rated", Kind.DISPUTE_RAISED: "disputed"}


def _steps(activity, first: int, last: int) -> list:
    logs = []
    for start in range(first, last + 1, LOG_WINDOW):
        logs += activity.events.Step().get_logs(from_block=start, to_block=min(last, start + LOG_WINDOW - 1))
    return logs


def _counts(activity, org_id: int, block: int) -> dict[str, int]:
    return dict(zip(KINDS, (int(n) for n in activity.functions.countsOf(org_id).call(block_identifier=block))))


def read_pedometer(w3: Web3, deployment: Deployment, *, block: int, since: int = 0,
                   names: dict[str, str] | None = None) -> dict:
    """Counters of every organization at `block` and at `since` (the change is the run's), the
    Step events recomputed up to `block`, and the timeline of every task with a step after `since`.
    `names`: account address (lower case) -> a label, e.g. "acme solver"."""
    c = bind(w3, deployment)
    names = {a.lower(): n for a, n in (names or {}).items()}
    org_count = c["Membership"].functions.orgCount().call(block_identifier=block)
    logs = _steps(c["Activity"], 0, block)
    from_events: dict[int, Counter] = defaultdict(Counter)
    for log in logs:
        from_events[log.args.org][Kind(log.args.kind).name.lower()] += log.args.amount
    organizations, mismatches = [], []
    for org_id in range(1, org_count + 1):
        name, active, _ = c["Membership"].functions.orgInfo(org_id).call(block_identifier=block)
        now = _counts(c["Activity"], org_id, block)
        before = _counts(c["Activity"], org_id, since) if since and since <= block else dict.fromkeys(KINDS, 0)
        events = {k: from_events[org_id][k] for k in KINDS}
        organizations.append({"org_id": org_id, "name": name, "active": active, "counts": now,
                              "change": {k: now[k] - before[k] for k in KINDS}, "from_events": events})
        mismatches += [{"org": name, "kind": k, "counter": now[k], "events": events[k]}
                       for k in KINDS if now[k] != events[k] and now[k] != 2**64 - 1]  # a saturated counter stops
    times = _block_times(w3, sorted({log.blockNumber for log in logs if log.blockNumber >= since}))
    return {"block": block, "since": since, "kinds": KINDS, "organizations": organizations,
            "mismatches": mismatches, "tasks": _timeline([log for log in logs if log.blockNumber >= since], times, names,
                                                         {o["org_id"]: o["name"] for o in organizations})}


def _block_times(w3: Web3, numbers: list[int]) -> dict[int, int]:
    return {n: int(w3.eth.get_block(n)["timestamp"]) for n in numbers}


def _timeline(logs: list, times: dict[int, int], names: dict[str, str], orgs: dict[int, str]) -> list[dict]:
    tasks: dict[int, dict] = {}
    for log in logs:
        task_id, kind = int(log.args.taskId), Kind(log.args.kind)
        if task_id == 0:
            continue
        row = tasks.setdefault(task_id, {"task": task_id, "token": int(log.args.tokenId)})
        at = times.get(log.blockNumber)
        actor = names.get(log.args.actor.lower(), log.args.actor)
        if kind is Kind.REQUESTED:
            row.update(requested=at, consumer=actor, consumer_org=orgs.get(log.args.org, log.args.org))
        elif kind is Kind.ACCEPTED:
            row.update(accepted=at, solver=actor, publisher_org=orgs.get(log.args.org, log.args.org))
        elif kind in CLOSING:
            row.update(closed=at, outcome=CLOSING[kind])
        elif kind in VERDICTS:
            row.update(verdict_at=at, verdict=VERDICTS[kind])
    return [tasks[t] for t in sorted(tasks)]
