"""The ADAS stage's run: search the agent's design on validation, compare the winner on test, write
`adas_optimized_model/` (the entering weights plus `design.json`).

The entering design is how the agent answered as the previous stage left it (the plain design: greedy, no
thoughts, every extension as trained), or the design it already carries. The search (`search.ADASystem`)
picks the design with the best lower confidence bound on validation; on the test split both designs answer
the same items and the paired bootstrap interval of the difference says whether the winner is better beyond
noise. `agent-forge eval <run>/08-adas/adas_optimized_model --method generate --n <test_items>` reproduces the
reported test accuracy (the same items, the same path through `evaluate_agent`).

Exercise: `pytest tests/stages/adas`.
"""

from __future__ import annotations

import os
import time

from ...errors import ForgeError
from ...evaluation.intervals import bootstrap_interval, paired_bootstrap
from ...models import load_agent, save_agent
from ...models.formats.design import AgentDesign
from ...stage_contract import StageContext, StageResult
from ...tasks import DOMAINS, task_grid
from ...utils import derive_seed, digest
from .plots import plot_pareto, plot_search
from .search import ADASystem, score_design

OUTPUT = "adas_optimized_model"


def _meta_agent(ac, say):
    mc = ac.meta_agent
    if not mc.endpoint:
        return None
    from .meta_agent import MetaAgent

    key = os.environ.get(mc.api_key_env) if mc.api_key_env else None
    if mc.api_key_env and not key:
        raise ForgeError(f"adas.meta_agent.api_key_env names {mc.api_key_env}, which is not set")
    say(f"meta-agent: {mc.model} at {mc.endpoint}")
    return MetaAgent(mc.endpoint, mc.model, api_key=key, timeout_s=mc.timeout_s)


def _generated_block_limits(ac):
    """The sandbox limits of the meta-agent's blocks while the search runs (nothing when there is none)."""
    from contextlib import nullcontext

    mc = ac.meta_agent
    if not mc.endpoint:
        return nullcontext()
    from ...inference.design import sandbox_limits
    from ...sandbox import SandboxLimits

    return sandbox_limits(SandboxLimits(cpu_seconds=mc.cpu_seconds, memory_bytes=mc.memory_mib << 20,
                                        wall_seconds=mc.wall_seconds))


def _by_domain(tasks, scores) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for task, score in zip(tasks, scores):
        out.setdefault(task.domain, []).append(score)
    return {d: round(100 * sum(v) / len(v), 2) for d, v in out.items()}


def run(ctx: StageContext) -> StageResult:
    ac, cfg = ctx.cfg.adas, ctx.cfg
    start = time.perf_counter()

    def say(text: str) -> None:
        ctx.console.print(f"[adas] {text}", markup=False, highlight=False)
        ctx.log.info(text)

    source = ctx.input_model()
    agent = load_agent(source, device=ctx.device)
    if agent.packed:
        raise ForgeError("the adas stage needs the latent (unpacked) agent, not a packed export")
    entering = agent.extensions.pop("design", None) or AgentDesign(name="plain")
    domains = list(DOMAINS)
    val = task_grid(domains, ac.levels, "val", ac.val_items, cfg.seed)
    test = task_grid(domains, ac.levels, "test", ac.test_items, cfg.seed)
    say(f"searching designs of {source} on {len(val)} validation items")
    system = ADASystem(agent, val, ac, seed=ctx.seed, scratch=ctx.scratch_dir, say=say,
                       meta_agent=_meta_agent(ac, say), entering=entering)
    fingerprint = digest({"adas": ac.model_dump(mode="json"), "seed": ctx.seed, "source": str(source),
                          "entering": entering.to_dict()})
    with _generated_block_limits(ac):
        archive = system.optimize_agent_architecture(fingerprint)
    chosen = archive.best()
    say(f"chosen: {chosen.name} ({chosen.design.describe()}), validation {chosen.fitness}")

    say(f"test: the entering and the chosen design on {len(test)} items")
    entering_test, entering_tokens, entering_ms = score_design(agent, entering, test)
    if chosen.design.key() == entering.key():
        chosen_test, chosen_tokens, chosen_ms = entering_test, entering_tokens, entering_ms
    else:
        chosen_test, chosen_tokens, chosen_ms = score_design(agent, chosen.design, test)
    boot = {"resamples": ac.bootstrap, "confidence": ac.confidence}
    difference = paired_bootstrap(entering_test, chosen_test, seed=derive_seed(ctx.seed, "test"), **boot)

    agent.extensions["design"] = chosen.design.with_changes()
    out = ctx.stage_dir / OUTPUT
    save_agent(agent, out)
    plot_search(archive, ctx.stage_dir / "search.png")
    plot_pareto(archive, chosen, ctx.stage_dir / "pareto.png")

    beats = difference.low > 0
    test_block = {
        "items": len(test),
        "entering": {"design": entering.name, **bootstrap_interval(entering_test, seed=derive_seed(ctx.seed, "e"), **boot).to_dict(),
                     "by_domain": _by_domain(test, entering_test), "tokens_per_answer": round(entering_tokens, 1),
                     "ms_per_answer": round(entering_ms, 1)},
        "chosen": {"design": chosen.name, **bootstrap_interval(chosen_test, seed=derive_seed(ctx.seed, "c"), **boot).to_dict(),
                   "by_domain": _by_domain(test, chosen_test), "tokens_per_answer": round(chosen_tokens, 1),
                   "ms_per_answer": round(chosen_ms, 1)},
        "difference": difference.to_dict(),
        "beats_entering_beyond_interval": beats,
    }
    front = archive.pareto_front()
    metrics = {
        "summary": {"test_entering": round(100 * sum(entering_test) / len(test), 2),
                    "test_chosen": round(100 * sum(chosen_test) / len(test), 2),
                    "test_gain": round(difference.mean, 2), "gain_low": round(difference.low, 2),
                    "gain_high": round(difference.high, 2), "designs": len(archive.scored()),
                    "stopped_early": sum(e.stopped_early for e in archive.entries),
                    "generations": len(archive.best_low) - 1},
        "chosen": {"name": chosen.name, "design": chosen.design.to_dict(), "describe": chosen.design.describe(),
                   "validation": chosen.fitness.to_dict(), "tokens_per_answer": round(chosen.tokens, 1),
                   "ms_per_answer": round(chosen.ms, 1), "origin": chosen.origin, "parents": chosen.parents},
        "test": test_block,
        "validation_items": len(val),
        "token_budget": round(system.budget, 1),
        "generations": len(archive.best_low) - 1,
        "stopped": "plateau" if archive.stalled_for() >= ac.patience else "max_generations",
        "per_generation": {"best_low": [round(v, 2) for v in archive.best_low],
                           "best_mean": [round(v, 2) for v in archive.best_mean],
                           "median_mean": [round(v, 2) for v in archive.median_mean]},
        "archive": [{"name": e.name, "generation": e.generation, "origin": e.origin, "parents": e.parents,
                     "describe": e.design.describe(), "validation": e.fitness.to_dict() if e.fitness else None,
                     "tokens_per_answer": round(e.tokens, 1), "ms_per_answer": round(e.ms, 1), "error": e.error,
                     "over_budget": e.over_budget, "stopped_early": e.stopped_early, "pareto": e in front}
                    for e in archive.entries],
        "meta_agent": ac.meta_agent.endpoint is not None,
        "eval_command": f"agent-forge eval {out} --method generate --n {ac.test_items} --seed {cfg.seed}"
                        + ("" if ac.levels == list(range(1, 11)) else f" --levels {','.join(map(str, ac.levels))}"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    say(f"test: entering {test_block['entering']['mean']:.2f}%, chosen {test_block['chosen']['mean']:.2f}%, "
        f"difference {difference} ({'beyond' if beats else 'within'} the interval)")
    trade = None
    if chosen_tokens > 1.5 * entering_tokens:
        trade = (f"answers cost {chosen_tokens / max(entering_tokens, 1e-9):.1f}x the tokens of the entering design "
                 "for the accuracy the search found on validation")
    return StageResult(models={"model": out}, metrics=metrics, trade_off=trade)
