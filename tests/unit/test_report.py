"""Report rendering from a crafted run directory (no network): figures, plots, tables."""

import json
import re

from testbed.metrics import percentile
from testbed.report import render
from testbed.report.data import RunData
from testbed.report.summary import fault_periods, head_lag, per_second, step_figures, summarize

T0 = 1_800_000_000.0


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def crafted_run(root, *, with_extras=True):
    """20 s at 50 tx/s: tx i submitted at T0 + i/50, included 1.0..1.9 s later in the block of that second."""
    txs, blocks = [], []
    for i in range(1000):
        submit = T0 + i / 50
        lat = 1.0 + (i % 10) / 10
        status = "included" if i % 100 else ("dropped" if i % 200 else "rejected")
        inc = submit + lat
        txs.append({"hash": f"0x{i:x}", "org": ["a", "b"][i % 2], "node": ["a-v1", "b-v1"][i % 2], "sender": "0xs",
                    "nonce": i, "kind": "transfer", "submit_time": submit, "status": status,
                    "included_block": int(inc) - int(T0) if status == "included" else None,
                    "included_time": inc if status == "included" else None,
                    "block_timestamp": int(inc) if status == "included" else None,
                    "error": None if status == "included" else "why not", "reorged": 0})
    for n in range(23):
        ts = int(T0) + n
        load = sum(1 for t in txs if t["block_timestamp"] == ts)
        blocks.append({"number": n, "hash": f"0x{n:x}", "timestamp": ts, "tx_count": load, "gas_used": 21000 * load,
                       "seen_time": ts + 0.3, "load_txs": load})
    write_jsonl(root / "txs.jsonl", txs)
    write_jsonl(root / "blocks.jsonl", blocks)
    write_jsonl(root / "rates.jsonl", [{"time": T0 + s, "target": 50.0, "users": 2} for s in range(20)])
    write_jsonl(root / "heads.jsonl", [{"time": T0 + s, "node": node, "head": s - (1 if node == "b-v1" and s == 7 else 0)}
                                       for s in range(20) for node in ("a-v1", "b-v1")])
    write_jsonl(root / "resources.jsonl", [{"time": T0 + s, "process": p, "pid": 1, "cpu_percent": c, "rss_mb": 100.0}
                                           for s in range(20) for p, c in (("generator", 10.0), ("a-v1", 30.0), ("b-v1", 50.0))])
    if with_extras:
        write_jsonl(root / "events.jsonl", [{"time": T0 + 5, "event": "fault_injected", "fault": "pause b-v1"},
                                            {"time": T0 + 9, "event": "fault_healed", "fault": "pause b-v1"},
                                            {"time": T0 + 15, "event": "branches_reconciled", "stalled_s": 15.2,
                                             "rewound": {"b-v1": 11}, "after": ["stall"]}])
        kinds = ["published", "consumed"]
        orgs = [{"org_id": i + 1, "name": n, "active": True, "counts": c, "change": c, "from_events": c}
                for i, (n, c) in enumerate((("a", {"published": 3, "consumed": 1}), ("b", {"published": 0, "consumed": 4})))]
        (root / "activity.json").write_text(json.dumps({"block": 19, "since": 0, "kinds": kinds, "organizations": orgs,
                                                        "mismatches": [], "tasks": []}))
        (root / "agreement.json").write_text(json.dumps({"agreed": True, "summary": "agreed on 23 heights"}))
    (root / "status.json").write_text(json.dumps({"status": "passed", "time": T0 + 30}))
    return txs, blocks


def test_window_figures_from_raw_records(tmp_path):
    txs, blocks = crafted_run(tmp_path)
    data = RunData.load(tmp_path)
    f = step_figures(data, T0, T0 + 20)
    assert f["offered_tps"] == 50.0 and f["target_tps"] == 50.0
    assert f["submitted"] == 1000 and f["included"] == 990 and f["rejected"] == 5 and f["dropped"] == 5
    assert f["included_ratio"] == 0.99
    in_window = [b for b in blocks if T0 <= b["timestamp"] < T0 + 20]
    assert f["included_tps"] == round(sum(b["load_txs"] for b in in_window) / 20, 2)
    lat = [t["included_time"] - t["submit_time"] for t in txs if t["status"] == "included"]
    assert f["latency"]["p50_s"] == percentile(lat, 50) and f["latency"]["p99_s"] == percentile(lat, 99)
    assert f["cpu"]["generator_percent"] == 10.0 and f["cpu"]["nodes_percent"] == 80.0


def test_per_second_series_head_lag_and_faults(tmp_path):
    crafted_run(tmp_path)
    data = RunData.load(tmp_path)
    series = per_second(data)
    assert series[0]["time"] == int(T0) and series[0]["offered"] == 50 and series[0]["target"] == 50.0
    assert sum(r["included"] for r in series) == 990
    lag = head_lag(data)
    assert lag["b-v1"]["max"] == 1 and lag["a-v1"]["max"] == 0
    assert fault_periods(data.events) == [{"start": T0 + 5, "end": T0 + 9, "label": "pause b-v1"}]
    assert fault_periods([{"time": 1, "event": "fault_injected", "node": "x"}, {"time": 4, "event": "other"}]) == [
        {"start": 1, "end": 4, "label": "x (not healed)"}]


def test_render_is_self_contained_and_matches_summary(tmp_path):
    crafted_run(tmp_path)
    html_path, json_path = render(tmp_path)
    page = html_path.read_text()
    summary = json.loads(json_path.read_text())
    # pedometer, head lag, resources, throughput, latency, histogram, block intervals
    assert page.count("<svg") == 7
    assert not re.search(r"""(src|href)=["']https?:""", page), "the page must not load anything from outside"
    assert "fault" in page and "pause b-v1" in page
    assert "published" in page and "consumed" in page and "#19" in page  # the pedometer from activity.json
    assert "equals the sum of its Step events" in page
    assert "agreed on 23 heights" in page
    assert summary["interventions"] == [{"time": T0 + 15, "after": ["stall"], "stalled_s": 15.2, "rewound": {"b-v1": 11}}]
    assert "<h2>Interventions</h2>" in page and "b-v1: #11" in page
    assert summary["transactions"] == {"included": 990, "rejected": 5, "dropped": 5}
    assert summary["unaccounted"] == 0
    assert f"{summary['latency']['p95_s']:.3f}" in page
    assert summary == json.loads(json.dumps(summarize(RunData.load(tmp_path))))


def test_demo_style_run_dir_renders(tmp_path):
    """`testbed demo` writes TxRecord rows, blocks without load_txs and a report.json with checks."""
    crafted_run(tmp_path, with_extras=False)
    for name in ("rates.jsonl", "heads.jsonl", "resources.jsonl"):
        (tmp_path / name).unlink()
    rows = [json.loads(line) for line in (tmp_path / "blocks.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "blocks.jsonl", [{k: v for k, v in b.items() if k != "load_txs"} for b in rows])
    (tmp_path / "report.json").write_text(json.dumps({"checks": [
        {"name": "no lost transaction", "passed": True, "detail": "990 of 1000"},
        {"name": "all nodes agree on every block", "passed": True, "detail": "agreed on 23 heights up to #22"}]}))
    html_path, json_path = render(tmp_path)
    summary = json.loads(json_path.read_text())
    assert summary["agreement"]["agreed"] is True
    assert "no lost transaction" in html_path.read_text()
    assert summary["overall"]["included_tps"] > 0


def test_empty_run_dir_still_renders(tmp_path):
    html_path, _ = render(tmp_path)
    assert "no data in this run" in html_path.read_text()
