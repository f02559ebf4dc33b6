"""Prompt Baking's loss and loop: zero KL when the model is its own teacher, the top-K bound, and a bake that
moves a prompt's effect into the weights (a model that copies its prompt learns to write the baked prefix)."""

from __future__ import annotations

import copy
import random

import torch

from agent_forge.models import generate
from agent_forge.training.bake_weights import BakeWeights
from agent_forge.training.baking import bake, measure_kl, sample_examples, teacher_targets


def _words(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("cdefgh") for _ in range(rng.randint(1, 3))) for _ in range(n)]


def test_kl_is_zero_when_the_model_is_its_own_teacher(tiny_model, tiny_tokenizer):
    xs = _words(0, 12)
    examples = sample_examples(tiny_model, tiny_tokenizer, xs, xs, samples=2, temperature=1.0, max_new_tokens=8,
                               seed=0)
    assert examples
    for top_k in (0, 5):
        targets = teacher_targets(tiny_model, tiny_tokenizer, examples, top_k=top_k)
        assert abs(measure_kl(tiny_model, tiny_tokenizer, examples, targets)) < 1e-6
    # with a prompt the teacher differs from the student, and top-K + tail never exceeds the full KL
    prompted = sample_examples(tiny_model, tiny_tokenizer, ["ab" + x for x in xs], xs, samples=2, temperature=1.0,
                               max_new_tokens=8, seed=0)
    full = measure_kl(tiny_model, tiny_tokenizer, prompted, teacher_targets(tiny_model, tiny_tokenizer, prompted))
    approx = measure_kl(tiny_model, tiny_tokenizer, prompted,
                        teacher_targets(tiny_model, tiny_tokenizer, prompted, top_k=3))
    assert full > 1e-6 and 0 <= approx <= full + 1e-7


def test_baking_a_prefix_into_a_copier(train_copier, tiny_tokenizer):
    """The copier repeats its prompt, so the prompt "ab" makes it answer "ab" + x: after baking, the model
    without the prompt does the same on held-out words, and its KL to the prompted model falls tenfold."""
    copier = train_copier(300)
    teacher = copy.deepcopy(copier).eval()
    train_x, held_x = _words(1, 64), _words(2, 16)
    examples = sample_examples(teacher, tiny_tokenizer, ["ab" + x for x in train_x], train_x, samples=2,
                               temperature=0.5, max_new_tokens=10, seed=1)
    targets = teacher_targets(teacher, tiny_tokenizer, examples)
    held = sample_examples(teacher, tiny_tokenizer, ["ab" + x for x in held_x], held_x, samples=1,
                           temperature=0.5, max_new_tokens=10, seed=2)
    held_targets = teacher_targets(teacher, tiny_tokenizer, held)
    torch.manual_seed(0)  # the LoRA's initial A draws from the global generator: not from what earlier tests left
    weights = BakeWeights.prepare(copier, method="lora", pattern=r"\.(self_attn|mlp)\.\w+_proj$", rank=8, alpha=16)
    before = measure_kl(weights.model, tiny_tokenizer, held, held_targets)
    torch.manual_seed(0)
    log = bake(weights.model, tiny_tokenizer, examples, targets, params=list(weights.named.values()), steps=150,
               batch_size=16, lr=1e-2, warmup_steps=5, seed=0, snapshot_steps=[0, 150], named=weights.named)
    baked = weights.fold()
    after = measure_kl(baked, tiny_tokenizer, held, held_targets)
    assert set(log.snapshots) == {0, 150}
    assert after < before / 10, (before, after)
    # greedy answers: the copier is only roughly trained, so the prompted teacher has near-ties on a few words
    # and an exact match on every word would test float summation order; the baked model must agree with it
    # on most words, where the un-prompted copier agrees on almost none
    wanted = generate(teacher, tiny_tokenizer, ["ab" + x for x in held_x], max_new_tokens=10, progress=False)
    unbaked = generate(teacher, tiny_tokenizer, held_x, max_new_tokens=10, progress=False)
    got = generate(baked, tiny_tokenizer, held_x, max_new_tokens=10, progress=False)
    agree_before = sum(g == w for g, w in zip(unbaked, wanted))
    agree_after = sum(g == w for g, w in zip(got, wanted))
    print("greedy agreement with the prompted teacher:", agree_before, "->", agree_after, "of", len(held_x))
    assert agree_after >= 0.6 * len(held_x) and agree_after >= agree_before + 0.4 * len(held_x), \
        (agree_before, list(zip(got, wanted)))
