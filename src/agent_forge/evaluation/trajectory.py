"""The agent's trajectory: one measurement of a saved agent, taken the same way after every stage.

`measure_agent(path, report_cfg, seed)` loads the agent with `load_agent` (every extension restored: a ternary
checkpoint is scored ternary, a packed export through its kernel) and records
* the full suite: every domain, the configured levels (1-10), test split, the fast teacher-forced path, in
  percent, overall and by domain and level, with the agent's expert dispatch applied (`evaluate_agent`);
* its size on disk (every file of the folder, or the GGUF file);
* its answer decode speed: new tokens per second answering one batch of prompts greedily with
  `inference.answer` (thinking if the agent thinks), after one warm-up call;
* with `report.general_text`, its perplexity on general English text (`general_text`, from
  `evaluation.general_text`: the model's plain forward, no thinking or dispatch), so that damage to what a
  pretrained model knows about language shows even where the suites cannot see it.

`compare(entering, leaving, max_drop, trade_off)` applies the "no stage silently makes the agent worse" rule:
the change of the mean over domains of the suite accuracy, flagged when it falls more than `max_drop`
points, declared when the stage stated its trade-off. The runner writes both into `NN-<stage>/trajectory.json`.

Per-item scores: `suite["scores"]` holds every suite item's score in item order (0/1 on the fast path, the
verifier's score in [0, 1] by generation) and `suite["items_digest"]` a digest of the item ids, so that two
measurements can be paired item by item. `paired_change(entering, leaving)` is then the change of the domain
mean with its paired percentile bootstrap interval (`intervals.paired_bootstrap`, over items): each item
difference is weighted by `n / (domains x items of its domain)`, so the item mean of the weighted differences
is exactly the difference of the domain means. The suite (`task_grid`) has equal items per domain, so every
weight is 1 and this is the plain item mean. `compare` adds it as `change_interval` (None for measurements
recorded before per-item scores existed, or scored on other items).
Exercise: `pytest tests/evaluation/test_trajectory.py`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..tasks import DOMAINS, task_grid
from .intervals import Interval, paired_bootstrap
from .report import evaluate_agent

TRAJECTORY_FILE = "trajectory.json"


def is_agent_path(path: Path) -> bool:
    """A folder with a transformers config (HF model or packed export), or a GGUF file: something to measure."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".gguf"
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False


def size_on_disk(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def suite_tasks(report_cfg, seed: int) -> list:
    return task_grid(list(DOMAINS), report_cfg.levels, "test", report_cfg.items_per_level, seed)


def measure_agent(path: Path, report_cfg, seed: int, *, device=None, dtype=None) -> dict[str, Any]:
    """Suite accuracy (%), size and decode speed of the agent saved at `path`."""
    from ..inference import answer
    from ..models import load_agent

    from ..models.formats.ternary import is_packed_export

    if Path(path).is_dir() and is_packed_export(path):
        device = dtype = None  # a packed export runs where its kernel does: the CPU, in float32
    agent = load_agent(path, device=device, dtype=dtype)
    tasks = suite_tasks(report_cfg, seed)
    # as the agent answers: an agent that dispatches to experts is scored under the weights it picks, and one
    # with tools by generation with its calls executed (teacher forcing cannot run a tool)
    uses_tools = "tools" in agent.extensions
    design = agent.extensions.get("design")
    report = evaluate_agent(agent, tasks, method="generate" if uses_tools or design else "fast",
                            batch_size=report_cfg.batch_size, think=False)
    if design is not None:
        method = f"generate (through its agent design {design.name!r}: {design.describe()})"
    else:
        method = ("generate (greedy, tool calls executed, no thinking, dispatch applied)" if uses_tools
                  else "fast (teacher-forced, no thinking, dispatch applied)")
    by_domain = {d: round(v, 2) for d, v in report.by_domain.items()}
    prompts = [t.prompt for t in tasks[:: max(1, len(tasks) // report_cfg.speed_prompts)]][: report_cfg.speed_prompts]
    answer(agent, prompts[:1], max_new_tokens=2, batch_size=1)  # warm-up: kernels, caches
    start = time.perf_counter()
    replies = answer(agent, prompts, max_new_tokens=report_cfg.speed_tokens, batch_size=len(prompts))
    seconds = time.perf_counter() - start
    # every reply ends with its terminator token, which the text does not show
    new_tokens = sum(len(agent.tokenizer(r.text, add_special_tokens=False)["input_ids"]) + 1 for r in replies)
    extra = {}
    if getattr(report_cfg, "general_text", False):
        from .general_text import general_text_perplexity

        extra["general_text"] = general_text_perplexity(
            agent.model, agent.tokenizer, report_cfg.general_text_tokens, report_cfg.general_text_window)
    return {
        "suite": {
            "accuracy": round(report.accuracy, 2),
            "domain_mean": round(sum(by_domain.values()) / max(1, len(by_domain)), 2),
            "by_domain": by_domain,
            "by_domain_level": report.to_dict()["by_domain_level"],
            "n": len(tasks),
            "method": method,
            **item_record(report.items),
        },
        "size_bytes": size_on_disk(path),
        "decode_tokens_per_s": round(new_tokens / seconds, 1) if seconds > 0 else None,
        "agent": agent.describe(),
        **extra,
    }


def items_digest(task_ids: Sequence[str]) -> str:
    """A short digest of an ordered list of item ids: equal digests mean the same items in the same order."""
    return hashlib.sha256("\n".join(task_ids).encode()).hexdigest()[:16]


def item_record(items: Sequence[tuple[str, str, int, float]]) -> dict[str, Any]:
    """`scores` (item order; 0/1 written as integers to keep the file small), `domains` (each item's domain,
    run-length encoded as [domain, count] pairs: the suite is grouped by domain) and `items_digest`."""
    scores = [int(s) if float(s) in (0.0, 1.0) else round(float(s), 4) for *_, s in items]
    runs: list[list] = []
    for _, domain, _, _ in items:
        if runs and runs[-1][0] == domain:
            runs[-1][1] += 1
        else:
            runs.append([domain, 1])
    return {"scores": scores, "domains": runs, "items_digest": items_digest([i[0] for i in items])}


def _item_domains(suite: dict) -> list[str]:
    return [domain for domain, count in suite["domains"] for _ in range(count)]


def domain_weights(domains: Sequence[str]) -> list[float]:
    """Per-item weights whose item mean of weighted scores is the mean over domains of per-domain means."""
    counts = Counter(domains)
    return [len(domains) / (len(counts) * counts[d]) for d in domains]


def paired_items(entering: dict | None, leaving: dict | None) -> tuple[list[float], list[float]] | None:
    """The two sides' per-item scores, weighted so that their item means are domain means; None when either
    side lacks per-item scores (recorded before they existed) or the two were scored on different items."""
    a, b = (entering or {}).get("suite") or {}, (leaving or {}).get("suite") or {}
    if not all(k in side for side in (a, b) for k in ("scores", "domains", "items_digest")):
        return None
    if a["items_digest"] != b["items_digest"] or len(a["scores"]) != len(b["scores"]):
        return None
    weights = domain_weights(_item_domains(a))
    return [w * s for w, s in zip(weights, a["scores"])], [w * s for w, s in zip(weights, b["scores"])]


def paired_change(entering: dict | None, leaving: dict | None, *, seed: int = 0) -> Interval | None:
    """leaving - entering on the suite's domain mean (points), with its 95% paired bootstrap interval; or None."""
    pair = paired_items(entering, leaving)
    return None if pair is None else paired_bootstrap(*pair, seed=seed)


def compare(entering: dict | None, leaving: dict, *, max_drop: float, trade_off: str | None) -> dict[str, Any]:
    """The change of the domain-mean suite accuracy from entering to leaving, and whether it is a regression;
    `change_interval`: the paired bootstrap interval of that change over the suite's items (or None)."""
    if entering is None:
        return {"change": None, "regression": False, "declared": None}
    change = round(leaving["suite"]["domain_mean"] - entering["suite"]["domain_mean"], 2)
    regression = change < -max_drop
    interval = paired_change(entering, leaving)
    return {
        "change": change,
        "change_interval": interval.to_dict() if interval else None,
        "regression": regression,
        "declared": trade_off if regression and trade_off else None,
        "undeclared": regression and not trade_off,
        "max_drop": max_drop,
    }


def read_trajectory(stage_dir: Path) -> dict | None:
    file = Path(stage_dir) / TRAJECTORY_FILE
    if not file.is_file():
        return None
    return json.loads(file.read_text())
