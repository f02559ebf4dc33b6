"""Dream keeps only verified samples; sleep's replay and weight averaging do what they claim."""

import copy
import random

import torch

from agent_forge.models import generate
from agent_forge.stages.curriculum.dream import dream
from agent_forge.stages.curriculum.episodes import sample_train_task
from agent_forge.stages.curriculum.sleep import average_into, sleep, snapshot
from agent_forge.tasks import verify
from agent_forge.training.policy_gradient import PolicyGradientTrainer
from agent_forge.training.replay import ReplayBuffer


def test_dream_keeps_exactly_the_verified_samples(trained_tiny):
    _, model, tok = trained_tiny
    targets = {"arithmetic": 1, "logic": 1}
    replay = ReplayBuffer()
    info = dream(model, tok, targets, replay, prompts=12, samples=4, temperature=0.5, max_new_tokens=8, seed=3,
                 world_seed=0, beyond_probability=0.0)
    # regenerate the same dream independently and verify every sample ourselves
    rng = random.Random(3)
    tasks = []
    for _ in range(12):
        domain = rng.choice(sorted(targets))
        tasks.append(sample_train_task(domain, targets[domain], rng, 0))
    outputs = generate(model, tok, [t.prompt for t in tasks], max_new_tokens=8, temperature=0.5, n=4, seed=3,
                       progress=False)
    verified = {(t.prompt, t.answer) for i, t in enumerate(tasks)
                if any(verify(t, o) >= 1.0 for o in outputs[i * 4:(i + 1) * 4])}
    stored = {tuple(p) for pairs in replay.state_dict()["items"].values() for p in pairs}
    assert stored == verified
    assert info["dreamed"] == 48 and info["kept"] == len(verified)
    assert info["kept"] > 0 and info["verified_rate"] < 1.0  # some dreams verify, the rest are dropped


def test_weight_averaging_interpolates():
    model = torch.nn.Linear(2, 2)
    slow = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    average_into(model, slow, 0.25)
    for name, p in model.named_parameters():
        assert torch.allclose(p, 0.75 * before[name])


def test_sleep_replay_lowers_loss_on_replayed_items(trained_tiny):
    _, model, tok = trained_tiny
    model = copy.deepcopy(model)
    replay = ReplayBuffer()
    rng = random.Random(0)
    pairs = [(t.prompt, t.answer) for t in (sample_train_task("logic", 2, rng, 0) for _ in range(6))]
    replay.add("logic:2", pairs)
    from agent_forge.evaluation import answer_loglik
    from agent_forge.tasks import Task

    tasks = [Task(f"t{i}", "logic", 2, p, a) for i, (p, a) in enumerate(pairs)]
    before = sum(answer_loglik(model, tok, tasks)) / len(tasks)
    slow = snapshot(model)
    trainer = PolicyGradientTrainer(model, tok, lr=3e-3, warmup_steps=0)
    step = lambda pairs: trainer.step([], [], [], [], demonstrations=list(pairs)).demo_loss
    new_slow, info = sleep(model, replay, slow, train_step=step, steps=15, batch_size=6, average=0.2, seed=0)
    after = sum(answer_loglik(model, tok, tasks)) / len(tasks)
    assert after > before + 0.2
    assert info["averaged"] and info["replay_keys"] == 1
    assert all(torch.equal(new_slow[n], p) for n, p in model.named_parameters())
