"""Curriculum cycles on logged experience: the deployed agent's update, resumable after a kill.

One cycle, as the curriculum's (`stages/curriculum/cycle.py`), through the same shared pieces:
1. roll out `prompts_per_cycle` logged tasks, `samples_per_prompt` answers each at `temperature`
   (`models.generate`), scored by the task's verifier;
2. one group-baseline policy-gradient step with a KL penalty to the deployed version
   (`training.policy_gradient.PolicyGradientTrainer`), carrying demonstrations: the references of verified
   failures and the corrections (`demos_per_step`), the reference of every rolled-out group no sample solved,
   and verified successes from the replay buffer (`training.replay.ReplayBuffer`: the log's successes plus what
   the rollouts verify, STaR-style);
3. `demo_steps` supervised steps through the same optimiser on fresh demonstrations and replay;
4. every `sleep_every` cycles, sleep (`training.sleep`): replay of the buffer balanced over (domain, level), then
   averaging toward the weights of the last sleep (the deployed weights at the first).

Every supervised batch of 2-4 (the policy step's demonstrations, the extra steps, sleep's replay) is topped up
with rehearsal (`learning.rehearsal.self_replay`: the deployed agent's own verified answers on fresh train
tasks of every suite cell, drawn uniformly over the pairs) to `rehearsal_share` of the batch: the log rehearses
only what users asked, and without it learning arithmetic level 2 cost the simulation's agent logic and
strings level 1 (100% -> 72-79%, suite -0.6 points); with it they stayed at 96% and the suite rose (+2.5).

Every `checkpoint_every` cycles the model's weights, the optimiser, the trainer's step count, the slow weights
and the replay buffer go to `<scratch>/checkpoint.pt` (written whole, then renamed over the old one), so a
killed `learn` resumes after the last checkpoint. Each cycle draws from its own seeded stream
(`seed`, cycle index), so a resumed run repeats what an uninterrupted one would have done from that cycle on.

Exercise: `pytest -m slow tests/learning/test_deployment.py`.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from pathlib import Path
from typing import Callable

import torch

from ..models import generate
from ..tasks import verify
from ..training.policy_gradient import PolicyGradientTrainer
from ..training.replay import ReplayBuffer
from ..training.sleep import sleep, snapshot
from .experience import Experience
from .rehearsal import self_replay
from .settings import LearnSettings

log = logging.getLogger("agent_forge.learning")
CHECKPOINT = "checkpoint.pt"


def _replay_key(domain: str, level: int) -> str:
    return f"{domain}:{level}"


def initial_replay(exp: Experience) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=512)
    domain_of = {t.prompt: t for t in exp.tasks}
    for prompt, answer in exp.replay:
        task = domain_of.get(prompt)
        buffer.add(_replay_key(task.domain, task.level) if task else "unverified", [(prompt, answer)])
    return buffer


def train_cycles(agent, exp: Experience, settings: LearnSettings, scratch: Path, *,
                 on_cycle: Callable[[int, dict], None] | None = None, facts_world: int | None = None) -> list[dict]:
    """Run the cycles on `agent.model` in place (resuming from `scratch`); returns each cycle's metrics."""
    model, tokenizer = agent.model, agent.tokenizer
    ref = copy.deepcopy(model)  # the deployed version: the KL anchor
    # from the deployed weights (before a checkpoint is loaded), so a resumed run rebuilds the same set
    cells = self_replay(ref, tokenizer, settings.rehearsal_per_cell, settings.seed + 2, facts_world=facts_world,
                        exclude={t.prompt for t in exp.tasks})
    rehearsal = [pair for key in sorted(cells) for pair in cells[key]]
    log.info("rehearsal: %d verified answers of the deployed agent over %d cells", len(rehearsal), len(cells))

    def mix(pairs: list, rng: random.Random) -> list:
        return pairs + _sample(rehearsal, _rehearsal_count(len(pairs), settings), rng)

    trainer = PolicyGradientTrainer(model, tokenizer, lr=settings.lr, ref_model=ref, kl_coef=settings.kl_coef,
                                    warmup_steps=settings.warmup_steps)
    replay = initial_replay(exp)
    slow = snapshot(model)
    start, history = 0, []
    state = _load(scratch)
    if state is not None:
        model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.steps_done = state["steps_done"]
        slow = state["slow"]
        replay = ReplayBuffer.from_state(state["replay"])
        start, history = state["cycle"], state["history"]
        log.info("resuming learn at cycle %d of %d", start + 1, settings.cycles)
    demos = exp.demonstrations
    tasks = list(exp.tasks)
    for cycle in range(start, settings.cycles):
        rng = random.Random(settings.seed * 1_000_003 + cycle)
        began = time.perf_counter()
        metrics = {"cycle": cycle + 1}
        if tasks:
            metrics |= _policy_step(model, tokenizer, trainer, tasks, demos, replay, settings, rng, mix)
        for _ in range(settings.demo_steps):
            extra = _sample(demos, settings.demos_per_step, rng) + replay.sample(settings.replay_per_step, rng)
            if extra:
                trainer.step([], [], [], [], demonstrations=mix(extra, rng))
        if settings.sleep_every and (cycle + 1) % settings.sleep_every == 0:
            slow, slept = sleep(model, replay, slow, steps=settings.sleep_steps, batch_size=settings.sleep_batch,
                                average=settings.sleep_average, seed=rng.randrange(2**31),
                                train_step=lambda pairs: trainer.step([], [], [], [],
                                                                      demonstrations=mix(pairs, rng)).demo_loss)
            metrics["sleep"] = slept
        metrics["seconds"] = round(time.perf_counter() - began, 3)
        history.append(metrics)
        if on_cycle is not None:
            on_cycle(cycle + 1, metrics)
        if (cycle + 1) % max(1, settings.checkpoint_every) == 0 or cycle + 1 == settings.cycles:
            _save(scratch, {"model": model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                            "steps_done": trainer.steps_done, "slow": slow, "replay": replay.state_dict(),
                            "cycle": cycle + 1, "history": history})
    model.eval()
    return history


def _rehearsal_count(n: int, settings: LearnSettings) -> int:
    """Rehearsal pairs to add to `n` others so that they are `rehearsal_share` of the batch."""
    share = min(max(settings.rehearsal_share, 0.0), 0.9)
    return round(n * share / (1.0 - share))


def _policy_step(model, tokenizer, trainer, tasks, demos, replay, settings, rng, mix) -> dict:
    batch = rng.sample(tasks, min(settings.prompts_per_cycle, len(tasks)))
    n = settings.samples_per_prompt
    longest = max(len(tokenizer(t.answer, add_special_tokens=False)["input_ids"]) for t in batch)
    outputs = generate(model, tokenizer, [t.prompt for t in batch], max_new_tokens=min(settings.max_new_tokens,
                       longest + 4), temperature=settings.temperature, n=n, seed=rng.randrange(2**31),
                       progress=False)
    prompts, completions, rewards, groups = [], [], [], []
    unsolved = []
    for i, task in enumerate(batch):
        scores = [verify(task, outputs[i * n + j]) for j in range(n)]
        for j, score in enumerate(scores):
            prompts.append(task.prompt)
            completions.append(outputs[i * n + j])
            rewards.append(score)
            groups.append(i)
        if max(scores) >= 1.0:  # verified while learning: replay from now on (the canonical answer)
            replay.add(_replay_key(task.domain, task.level), [(task.prompt, task.answer)])
        else:
            unsolved.append((task.prompt, task.answer))  # reward alone cannot lift a pass@k of zero
    step_demos = unsolved + _sample(demos, settings.demos_per_step, rng) + replay.sample(settings.replay_per_step, rng)
    stats = trainer.step(prompts, completions, rewards, groups, demonstrations=mix(step_demos, rng), lr=settings.pg_lr)
    return {"reward": round(sum(rewards) / len(rewards), 4), "solved_groups": round(stats.solved_groups, 4),
            "kl": round(stats.kl, 5), "demo_loss": round(stats.demo_loss, 4), "unsolved": len(unsolved)}


def _sample(pairs, n, rng) -> list:
    if not pairs or n <= 0:
        return []
    return [pairs[rng.randrange(len(pairs))] for _ in range(n)]


def _load(scratch: Path) -> dict | None:
    path = Path(scratch) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a checkpoint is written whole and renamed, so this is damage from elsewhere
        log.warning("ignoring the unreadable checkpoint %s (%s); starting the cycles over", path, exc)
        return None


def _save(scratch: Path, state: dict) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / CHECKPOINT
    temp = path.with_name(f"{CHECKPOINT}.tmp-{os.getpid()}")
    torch.save(state, temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
