"""Ablations of the curriculum stage: the full loop next to runs without sleep/dream, without self-modeling,
with Grokfast (off by default, so its ablation switches it on), without thoughts and without the extra
supervised steps on organic demonstrations (`cycle.demo_steps=0`), all from the same
entering model with the same seed and a small config of a fixed number of cycles.

For each variant it prints the domains whose mastered level rose above the baseline, the mean test accuracy
at levels above the baseline (before -> after, and the difference to the full loop), the change at already
mastered levels, ECE before -> after, and wall time. The entering model is `--model` (e.g.
`runs/tiny/03-bitnet/model`); without it a tiny model is pretrained on the easy levels here (a few minutes on
CPU). A model without thought tokens gets Quiet-STaR's delimiters added, so that "no thoughts" differs from
the full loop.

Run: `python benchmarks/bench_curriculum_ablations.py [--model PATH] [--cycles 8] [--levels 1]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from agent_forge.config import ForgeConfig, TinyModelConfig
from agent_forge.models import add_special_tokens, build_tiny_model, build_tiny_tokenizer, load_agent, save_model
from agent_forge.stages import StageInputs
from agent_forge.stages.curriculum import run
from agent_forge.stages.curriculum.rollout import END_OF_THOUGHT, START_OF_THOUGHT
from agent_forge.tasks import alphabet, iter_tasks
from agent_forge.training.supervised import train_supervised

VARIANTS = {
    "full": {},
    "no sleep/dream": {"sleep": {"enabled": False}, "dream": {"enabled": False}},
    "no self-modeling": {"self_model": {"enabled": False}},
    # Grokfast is off by default (it destabilised RL here), so its ablation switches it on
    "with grokfast": {"grokfast": {"enabled": True}},
    "no thoughts": {"cycle": {"use_thoughts": False}},
    "no demo steps": {"cycle": {"demo_steps": 0}},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def entering_model(path: str | None, workdir: Path, steps: int) -> Path:
    """The model every variant starts from, with thought tokens."""
    if path:
        agent = load_agent(path)  # a ternary checkpoint comes back ternary
        model, tok = agent.model, agent.tokenizer
    else:
        tok = build_tiny_tokenizer(alphabet())
        model = build_tiny_model(tok, TinyModelConfig(), seed=0)
        stream = iter_tasks(["arithmetic", "strings", "logic", "facts"], [1, 2], "train", 0)
        train_supervised(model, tok, lambda s: [(t.prompt, t.answer) for t in (next(stream) for _ in range(64))],
                         steps=steps, lr=2e-3, warmup_steps=20, desc="bench: pretrain entering model")
    if START_OF_THOUGHT not in tok.get_vocab():
        add_special_tokens(model, tok, [START_OF_THOUGHT, END_OF_THOUGHT])
    out = workdir / "entering"
    save_model(model, tok, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="entering model folder (default: pretrain one here)")
    parser.add_argument("--cycles", type=int, default=8, help="cycles per level (fixed, so variants compare)")
    parser.add_argument("--levels", type=int, default=1)
    parser.add_argument("--pretrain-steps", type=int, default=450)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    # a fixed number of cycles, not a time budget: wall time depends on the machine's load, cycles do not
    small = {"levels": args.levels, "max_cycles_per_level": args.cycles, "min_cycles_per_level": args.cycles,
             "time_budget_s": 1e9, "test_items": 30}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = entering_model(args.model, workdir, args.pretrain_steps)
        for name in args.variants:
            cfg = ForgeConfig.model_validate({"device": "cpu", "curriculum": _merge(small, VARIANTS[name])})
            start = time.perf_counter()
            m = run(cfg, StageInputs(models={"model": source}), workdir / name.replace(" ", "_").replace("/", "-")).metrics
            rows[name] = _row(m, time.perf_counter() - start)
    _print(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _row(m: dict, seconds: float) -> dict:
    def mean(key):
        vals = [s[key] for s in m["by_domain"].values() if s[key] is not None]
        return round(sum(vals) / len(vals), 1) if vals else None

    return {
        "improved": m["domains_improved"], "mastered": m["mastered"], "frontier": m["frontier"],
        "above_before": mean("above_before"), "above_after": mean("above_after"),
        "mastered_before": mean("mastered_before"), "mastered_after": mean("mastered_after"),
        "ece_before": m["ece_before"], "ece_after": m["ece_after"], "cycles": m["cycles"], "seconds": round(seconds, 1),
    }


def _print(rows: dict) -> None:
    head = f"{'variant':18} {'improved':>8} {'above (before->after)':>22} {'mastered lv delta':>18} {'ECE':>14} {'cycles':>6} {'s':>6}"
    print(head)
    print("-" * len(head))
    full = rows.get("full")
    for name, r in rows.items():
        delta = None if r["mastered_after"] is None else round(r["mastered_after"] - r["mastered_before"], 1)
        above = f"{r['above_before']}->{r['above_after']}"
        if full and name != "full" and r["above_after"] is not None and full["above_after"] is not None:
            above += f" ({r['above_after'] - full['above_after']:+.1f})"
        print(f"{name:18} {len(r['improved']):>8} {above:>22} {str(delta):>18} "
              f"{r['ece_before']:.3f}->{r['ece_after']:.3f} {r['cycles']:>6} {r['seconds']:>6}")


if __name__ == "__main__":
    main()
