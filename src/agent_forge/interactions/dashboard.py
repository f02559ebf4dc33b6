"""The dashboard's numbers, computed from the log: what `GET /dashboard/data` returns for the page's charts.

`dashboard_data(log, window_s, buckets)` reads the recent interactions (aggregate columns only, never the
texts), the feedback, the canary runs and the model versions, and returns plain JSON:

* `requests`: per time bucket, answered requests and errors;
* `latency`: per bucket, p50/p90/p99 of the end-to-end latency (ms);
* `tools`: calls per tool name;
* `calibration`: confidence in ten bins against the verified accuracy of the answers in each bin (only
  answers whose prompt a verifier applied to), plus the overall verified accuracy;
* `feedback`: per bucket, thumbs up/down and corrections;
* `versions`: every model version answered with (first/last seen, requests, verified accuracy), with the
  version store's promotion history when there is one;
* `canary`: the runs (accuracy, reference, falling) and whether the latest is falling.

Exercise: `pytest tests/serve/test_dashboard.py`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def dashboard_data(log, *, window_s: float = 3600.0, buckets: int = 30, history: Sequence[dict] = (),
                   now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    since = now - window_s
    width = window_s / buckets
    rows = log.recent(since)
    starts = [since + i * width for i in range(buckets)]

    def bucket(created: float) -> int:
        return min(buckets - 1, max(0, int((created - since) / width)))

    per_bucket: list[list[dict]] = [[] for _ in range(buckets)]
    for row in rows:
        per_bucket[bucket(row["created"])].append(row)
    requests = [{"t": t, "ok": sum(1 for r in b if r["status"] == 200), "errors": sum(1 for r in b if r["status"] != 200)}
                for t, b in zip(starts, per_bucket)]
    latency = []
    for t, b in zip(starts, per_bucket):
        values = [r["latency_ms"] for r in b if r["status"] == 200 and r["latency_ms"] is not None]
        latency.append({"t": t, "p50": percentile(values, 50), "p90": percentile(values, 90),
                        "p99": percentile(values, 99)})

    tools: dict[str, int] = {}
    for row in rows:
        for name in filter(None, (row.get("tool_names") or "").split(",")):
            tools[name] = tools.get(name, 0) + 1

    bins = [{"lo": i / 10, "hi": (i + 1) / 10, "n": 0, "correct": 0.0} for i in range(10)]
    verified = [r for r in rows if r["verified"] is not None]
    for row in verified:
        if row["confidence"] is not None:
            b = bins[min(9, max(0, int(row["confidence"] * 10)))]
            b["n"] += 1
            b["correct"] += row["verified"]
    for b in bins:
        b["accuracy"] = b.pop("correct") / b["n"] if b["n"] else None

    feedback = [{"t": t, "up": 0, "down": 0, "corrections": 0} for t in starts]
    for row in log.recent_feedback(since):
        b = feedback[bucket(row["created"])]
        if row["rating"] == 1:
            b["up"] += 1
        elif row["rating"] == -1:
            b["down"] += 1
        b["corrections"] += int(row["corrected"] or 0)

    runs = log.canary_runs()
    return {
        "now": now, "window_s": window_s, "bucket_s": width,
        "totals": {"requests": len(rows), "errors": sum(1 for r in rows if r["status"] != 200),
                   "verified": len(verified),
                   "verified_accuracy": (sum(r["verified"] for r in verified) / len(verified)) if verified else None},
        "requests": requests, "latency": latency,
        "tools": [{"name": k, "calls": v} for k, v in sorted(tools.items(), key=lambda kv: (-kv[1], kv[0]))],
        "calibration": bins,
        "feedback": feedback,
        "versions": [dict(v) for v in log.versions()], "history": list(history),
        "canary": {"runs": [{k: r[k] for k in ("created", "model_version", "trigger", "accuracy", "reference",
                                                "falling", "n", "by_domain")} for r in runs],
                   "falling": bool(runs and runs[-1]["falling"])},
    }
