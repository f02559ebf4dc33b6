"""A training cycle: rollouts with and without thoughts, the critic, and one policy-gradient step."""

import copy
import random

import torch

from agent_forge.config.curriculum import CurriculumConfig
from agent_forge.models import add_special_tokens, encode_pairs
from agent_forge.stages.curriculum.controller import PerDomainDifficulty
from agent_forge.stages.curriculum.cycle import CycleContext, run_cycle
from agent_forge.stages.curriculum.episodes import Episode, TaskMixer, sample_train_task
from agent_forge.models import Agent
from agent_forge.models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT
from agent_forge.stages.curriculum.rollout import Thinker, rollout
from agent_forge.tasks import make_tasks
from agent_forge.training.policy_gradient import PolicyGradientTrainer
from agent_forge.training.replay import ReplayBuffer
from agent_forge.training.supervised import answer_cross_entropy

SMALL = {"domains": ["arithmetic", "logic"], "cycle": {"prompts": 6, "samples_per_prompt": 3, "max_new_tokens": 8},
         "mix": {"organic": 1, "synthetic": 3, "retrieval": 1, "multi_agent": 2}}


def _context(model, tok, cfg, thinker=None):
    trainer = PolicyGradientTrainer(model, tok, lr=1e-3, ref_model=copy.deepcopy(model), kl_coef=cfg.cycle.kl_coef)
    mixer = TaskMixer(cfg.mix, 0, cfg.cycle.prefix_probability, True)
    return CycleContext(model, tok, trainer, mixer, ReplayBuffer(), PerDomainDifficulty.from_config(cfg.controller),
                        cfg, 0, thinker)


def test_cycle_updates_the_model_and_reports_metrics(trained_tiny):
    _, model, tok = trained_tiny
    model = copy.deepcopy(model)
    cfg = CurriculumConfig.model_validate(SMALL)
    ctx = _context(model, tok, cfg)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = run_cycle(ctx, 0, 1, {"arithmetic": 1, "logic": 1})
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert metrics["kinds"]["synthetic"] == 3 and metrics["kinds"]["multi_agent"] == 2
    assert metrics["kinds"]["retrieval"] == 1 and metrics["kinds"]["organic"] == 1
    assert 0.0 <= metrics["success"] <= 1.0 and metrics["kl"] >= 0.0
    # organic demo + every unsolved solver group gets its worked solution
    assert metrics["demonstrations"] >= 1 + metrics["unsolved_groups"]


def test_demo_steps_add_supervised_steps_that_teach_the_target_level(trained_tiny):
    """Extra organic steps per cycle: one optimiser step each, and the target level's loss falls further."""
    _, model, tok = trained_tiny
    held_out = [(t.prompt, t.answer) for t in make_tasks("arithmetic", 2, "val", 32, 0)]
    losses, steps = {}, {}
    for n in (0, 3):
        cfg = CurriculumConfig.model_validate(
            {**SMALL, "domains": ["arithmetic"], "cycle": {**SMALL["cycle"], "demo_steps": n}})
        ctx = _context(copy.deepcopy(model), tok, cfg)
        ctx.controller.reset(1.0)  # every demonstration at the target level
        for c in range(2):
            run_cycle(ctx, c, 1, {"arithmetic": 2})
        steps[n] = ctx.trainer.steps_done
        with torch.no_grad():
            losses[n] = float(answer_cross_entropy(ctx.model, encode_pairs(tok, *map(list, zip(*held_out)))))
    assert steps == {0: 2, 3: 8}
    assert losses[3] < losses[0] - 0.05, losses


def test_rollout_with_thoughts_puts_the_thought_between_prompt_and_answer(trained_tiny):
    _, model, tok = trained_tiny
    model, tok = copy.deepcopy(model), copy.deepcopy(tok)
    add_special_tokens(model, tok, [START_OF_THOUGHT, END_OF_THOUGHT])
    thinker = Thinker.of(Agent(model, tok), length=4)
    assert thinker is not None and Thinker.of(Agent(trained_tiny[1], trained_tiny[2])) is None
    rng = random.Random(0)
    tasks = [sample_train_task("arithmetic", 1, rng, 0) for _ in range(3)]
    episodes = [Episode(t, t.prompt, "synthetic") for t in tasks]
    samples = rollout(model, tok, episodes, n=2, temperature=1.0, max_new_tokens=6, seed=0, thinker=thinker,
                      think_probability=1.0, reasoning_weight=0.5)
    assert len(samples) == 6 and [s.group for s in samples] == [0, 0, 1, 1, 2, 2]
    for s in samples:
        assert s.completion_ids[0] == thinker.start_id and thinker.end_id in s.completion_ids
        end = s.completion_ids.index(thinker.end_id)
        assert end <= 1 + thinker.length
        assert 0.0 <= s.reasoning <= 0.5 and s.thought is not None
    # thoughts switched off: plain answers only
    plain = rollout(model, tok, episodes, n=2, temperature=1.0, max_new_tokens=6, seed=0, thinker=thinker,
                    think_probability=0.0)
    assert all(s.thought is None and thinker.start_id not in s.completion_ids for s in plain)
