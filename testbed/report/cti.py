"""The CTI side of a report: the per-organization pedometer and every task's timeline, from
activity.json (read from the chain at the run's end, testbed.cti.pedometer)."""

from __future__ import annotations

from statistics import median

from testbed.metrics import percentile

# the counters shown first (the rest follow in the contract's order)
MAIN_KINDS = ("published", "minted", "sold", "bought", "requested", "accepted", "solved", "consumed",
              "feedback_given", "feedback_received", "dispute_raised", "dispute_received")
STAGES = (("request -> accept", "requested", "accepted"), ("accept -> finish", "accepted", "closed"),
          ("finish -> verdict", "closed", "verdict_at"), ("request -> finish", "requested", "closed"))


def pedometer(activity: dict | None) -> dict | None:
    """Per organization: every counter at the final head and its change during the run; the
    counters the Step events do not confirm; totals per kind."""
    if not activity:
        return None
    if "error" in activity:
        return {"error": activity["error"]}
    kinds = list(activity.get("kinds") or [])
    ordered = [k for k in MAIN_KINDS if k in kinds] + [k for k in kinds if k not in MAIN_KINDS]
    orgs = activity.get("organizations") or []
    return {
        "block": activity.get("block"), "since": activity.get("since"), "kinds": ordered,
        "organizations": [{"name": o["name"], "active": o["active"], "counts": o["counts"], "change": o["change"]}
                          for o in orgs],
        "totals": {k: sum(o["counts"].get(k, 0) for o in orgs) for k in ordered},
        "mismatches": list(activity.get("mismatches") or []),
    }


def tasks(activity: dict | None) -> dict | None:
    """Every task of the run: its outcome and verdict, per-stage durations (median, p95, max)."""
    rows = (activity or {}).get("tasks")
    if rows is None:
        return None
    stages = {}
    for label, start, end in STAGES:
        spans = [r[end] - r[start] for r in rows if r.get(start) is not None and r.get(end) is not None]
        stages[label] = {"count": len(spans), "median_s": median(spans) if spans else None,
                         "p95_s": percentile(spans, 95), "max_s": max(spans, default=None)}
    outcomes: dict[str, int] = {}
    for r in rows:
        key = r.get("outcome") or ("accepted" if r.get("accepted") else "pending")
        outcomes[key] = outcomes.get(key, 0) + 1
    return {"count": len(rows), "outcomes": outcomes,
            "rated": sum(r.get("verdict") == "rated" for r in rows),
            "disputed": sum(r.get("verdict") == "disputed" for r in rows),
            "stages": stages, "rows": rows}
