"""One training cycle of the curriculum: draw a mixed batch, think and answer, verify, update.

A cycle draws episodes of the four kinds (see `episodes.py`), samples a group of answers per episode (after an
internal thought on a share of them when the model has thought tokens), lets the critic instance judge the
multi-agent solvers' answers, and makes one group-baseline policy-gradient step with a KL penalty to the
model that entered the stage. The same step carries demonstrations: the organic worked solutions, one
verified sample per solved group (STaR-style), the reference answer of every group where no sample succeeded
(reward alone cannot lift a task whose pass@k is zero), and a few verified items replayed from earlier levels.
Then `cycle.demo_steps` supervised steps follow, each on fresh organic demonstrations and replayed items: one
update per rollout batch learned a learnable level far more slowly than supervision on the same data does.
The success rate of the solver episodes drives the edge-of-chaos controller.

Exercise: `pytest tests/stages/curriculum/test_cycle.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ...evaluation import percent
from ...training.policy_gradient import PolicyGradientTrainer
from ...training.replay import ReplayBuffer
from .controller import PerDomainDifficulty
from .episodes import TaskMixer, learning_signal_weights
from .multi_agent import critic_accuracy, critic_episodes
from .rollout import Thinker, rollout


@dataclass
class CycleContext:
    """Everything a cycle reads and updates, shared across the cycles of a stage run."""

    model: object
    tokenizer: object
    trainer: PolicyGradientTrainer
    mixer: TaskMixer
    replay: ReplayBuffer
    controller: PerDomainDifficulty
    cfg: object  # CurriculumConfig
    seed: int
    thinker: Thinker | None = None
    recent_accuracy: dict[str, float] = field(default_factory=dict)
    # greedy validation accuracy at each domain's current target level (the mastery checks fill it in)
    target_accuracy: dict[str, float] = field(default_factory=dict)


def run_cycle(ctx: CycleContext, cycle_index: int, level: int, targets: dict[str, int]) -> dict:
    """Run one cycle at curriculum `level` with per-domain task `targets`; returns the cycle's metrics."""
    cc = ctx.cfg.cycle
    start = time.perf_counter()
    rng = random.Random(ctx.seed * 1_000_003 + cycle_index)
    mix = ctx.cfg.mix
    weights = (learning_signal_weights(sorted(targets), ctx.target_accuracy, mix.focus_floor)
               if mix.domain_focus == "signal" else None)
    difficulty = ctx.controller.difficulties(sorted(targets))
    episodes, demos = ctx.mixer.draw(cc.prompts, targets, difficulty, level, ctx.recent_accuracy, rng,
                                     domain_weights=weights)
    n_organic = len(demos)
    use_thoughts = cc.use_thoughts and ctx.thinker is not None
    samples = rollout(
        ctx.model, ctx.tokenizer, episodes, n=cc.samples_per_prompt, temperature=cc.temperature,
        max_new_tokens=_answer_budget(ctx.tokenizer, episodes, cc.max_new_tokens), seed=rng.randrange(2**31),
        thinker=ctx.thinker if use_thoughts else None,
        think_probability=cc.thought_probability if use_thoughts else 0.0, reasoning_weight=cc.reasoning_weight,
    )
    critics = critic_episodes(episodes, samples, rng)
    critic_samples = rollout(
        ctx.model, ctx.tokenizer, critics, n=max(2, ctx.cfg.mix.critic_samples), temperature=cc.temperature,
        max_new_tokens=4, seed=rng.randrange(2**31),
    )
    for s in critic_samples:
        s.group += len(episodes)
    all_episodes = episodes + critics
    everything = samples + critic_samples

    solved: dict[int, bool] = {}
    for s in everything:
        solved[s.group] = solved.get(s.group, False) or s.score >= 1.0
    if cc.replay_verified:
        seen = set()
        for s in everything:
            if s.score >= 1.0 and s.group not in seen:
                seen.add(s.group)
                ep = all_episodes[s.group]
                demos.append((ep.prompt, ep.task.answer))
    unsolved = [g for g, ok in solved.items() if not ok and all_episodes[g].kind != "critic"]
    if cc.demonstrate_unsolved:
        demos.extend((all_episodes[g].prompt, all_episodes[g].task.answer) for g in unsolved)
    # verified solutions are kept for sleep; the canonical answer is stored, so forgiven formatting noise is not
    for g, ok in solved.items():
        ep = all_episodes[g]
        if ok and ep.kind != "critic":
            ctx.replay.add(ep.replay_key, [(ep.task.prompt, ep.task.answer)])
    old_keys = [k for k in ctx.replay.keys() if _is_old(k, targets)]
    demos.extend(ctx.replay.sample(cc.replay_old, rng, old_keys))

    stats = ctx.trainer.step_tokens(
        [s.prompt_ids for s in everything], [s.completion_ids for s in everything],
        [s.reward for s in everything], [s.group for s in everything], demonstrations=demos,
    )
    for _ in range(cc.demo_steps):
        extra = ctx.mixer.demonstrations(targets, rng, weights, difficulty=difficulty)
        extra += ctx.replay.sample(cc.replay_old, rng, old_keys)
        if extra:
            ctx.trainer.step([], [], [], [], demonstrations=extra)
    solver = [s for s in samples if episodes[s.group].kind in ("synthetic", "multi_agent", "retrieval")]
    success = sum(s.score for s in solver) / max(1, len(solver))
    by_domain: dict[str, list[float]] = {}
    for s in solver:
        by_domain.setdefault(episodes[s.group].task.domain, []).append(s.score)
    rates = {d: sum(scores) / len(scores) for d, scores in by_domain.items()}
    ctx.controller.update(rates)
    for domain, rate in rates.items():
        prev = ctx.recent_accuracy.get(domain)
        ctx.recent_accuracy[domain] = rate if prev is None else 0.7 * prev + 0.3 * rate
    thought_samples = [s for s in samples if s.thought is not None]
    return {
        "cycle": cycle_index,
        "level": level,
        "success": round(success, 4),
        "reward": round(sum(s.reward for s in everything) / max(1, len(everything)), 4),
        "kl": round(stats.kl, 5),
        "pg_loss": round(stats.pg_loss, 5),
        "demo_loss": round(stats.demo_loss, 5),
        "solved_groups": round(stats.solved_groups, 4),
        "unsolved_groups": len(unsolved),
        "demonstrations": len(demos),
        "difficulty": round(sum(difficulty.values()) / max(1, len(difficulty)), 3),
        "difficulty_by_domain": {d: round(v, 3) for d, v in difficulty.items()},
        "domain_weights": {d: round(w, 3) for d, w in weights.items()} if weights else None,
        "critic_accuracy": percent(critic_accuracy(critic_samples)) if critic_samples else None,
        "thought_share": round(len(thought_samples) / max(1, len(samples)), 3),
        "reasoning_bonus": round(sum(s.reasoning for s in thought_samples) / max(1, len(thought_samples)), 4),
        "kinds": {k: sum(1 for e in episodes if e.kind == k) for k in ("synthetic", "retrieval", "multi_agent")}
        | {"organic": n_organic, "critic": len(critics)},
        "seconds": round(time.perf_counter() - start, 3),
    }


def _answer_budget(tokenizer, episodes, cap: int, margin: int = 4) -> int:
    """Tokens to generate: the longest reference answer plus a margin, at most `cap`.

    Rows that never emit the terminator run to this limit, so a tight limit saves most of the sampling time
    at the low levels, whose answers are a few characters long.
    """
    if not episodes:
        return cap
    longest = max(len(tokenizer(e.task.answer, add_special_tokens=False)["input_ids"]) for e in episodes)
    return max(1, min(cap, longest + margin))


def _is_old(key: str, targets: dict[str, int]) -> bool:
    """A replay key `domain:level` below the level its domain is learning now."""
    domain, _, level = key.partition(":")
    return domain in targets and level.isdigit() and int(level) < targets[domain]
