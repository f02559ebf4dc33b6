"""Self-reflection keeps a rewritten reasoning only if it holds without the hint.

A tiny Llama is taught a few exact sequences so that its behaviour on three logic tasks is known:
A it answers right at the first attempt; B it answers wrong, rewrites right when shown the hint, and reads
its rewrite to the right answer without the hint (kept); C it answers wrong and rewrites right with the hint,
but without the hint its own reading of those steps ends in the wrong answer (rejected: the rewrite only held
because the hint was in the prompt). About 20 s on one thread.
"""

from __future__ import annotations

import random

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer
from agent_forge.stages.experts.reflection import (
    holds_without_hint,
    reflect,
    reflection_prompt,
    worked_attempts,
    worked_correct,
)
from agent_forge.tasks import alphabet, make_tasks
from agent_forge.tasks.worked import split_worked, worked_answer, worked_prompt
from agent_forge.training.supervised import train_supervised

TINY = TinyModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)


def _wrong(answer: str) -> str:
    return str((int(answer) + 1) % 10)


@pytest.fixture(scope="module")
def taught():
    """(model, tokenizer, (A, B, C)) with the behaviour described in the module docstring."""
    torch.set_num_threads(1)
    a, b, c = [t for t in make_tasks("logic", 2, "train", 40, seed=5) if t.prompt.startswith("max ")][:3]
    junk_b = worked_answer("max so far: 0 0 0", _wrong(b.answer))
    wrong_c = worked_answer(c.rationale, _wrong(c.answer))
    pairs = [
        (worked_prompt(a), worked_answer(a.rationale, a.answer)),
        # B: the first attempt is the junk (seen three times as often as the right steps, so greedy takes it)
        *[(worked_prompt(b), junk_b)] * 3,
        (worked_prompt(b), worked_answer(b.rationale, b.answer)),
        (reflection_prompt(b, junk_b), worked_answer(b.rationale, b.answer)),
        # C: its own steps lead it to the wrong answer; only the hinted prompt gets the right one
        (worked_prompt(c), wrong_c),
        (reflection_prompt(c, wrong_c), worked_answer(c.rationale, c.answer)),
    ]
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    torch.manual_seed(0)
    rng = random.Random(0)
    train_supervised(model, tok, lambda step: [pairs[rng.randrange(len(pairs))] for _ in range(8)], steps=400,
                     lr=3e-3, warmup_steps=10, progress=False)
    model.eval()
    return model, tok, (a, b, c)


def test_split_worked_reads_steps_and_answer():
    assert split_worked("max so far: 4 8 => 8") == ("max so far: 4 8", "8")
    assert split_worked("a => b => 9") == ("a => b", "9")  # the last arrow separates the answer
    assert split_worked("8") is None and split_worked(" => 8") is None


def test_the_taught_model_behaves_as_the_fixture_says(taught):
    model, tok, (a, b, c) = taught
    first = worked_attempts(model, tok, [a, b, c], max_new_tokens=48)
    assert [worked_correct(t, x) for t, x in zip((a, b, c), first)] == [True, False, False]


def test_a_rewrite_is_kept_only_if_it_holds_without_the_hint(taught):
    model, tok, (a, b, c) = taught
    assert holds_without_hint(model, tok, [b, c], [b.rationale, c.rationale]) == [True, False]


def test_reflect_counts_and_keeps_what_holds(taught):
    model, tok, (a, b, c) = taught
    pairs, report = reflect(model, tok, [a, b, c], max_new_tokens=48)
    found = report.to_dict()
    assert found["attempted"] == {"logic": 3} and found["first_pass"] == {"logic": 1}
    assert found["failures"] == {"logic": 2}
    assert found["rewritten_with_hint"] == {"logic": 2}  # both rewrites reach the answer with the hint ...
    assert found["accepted"] == {"logic": 1}  # ... one holds without it
    assert found["turned_share"] == {"logic": 50.0}
    assert sorted(pairs) == sorted([(worked_prompt(a), worked_answer(a.rationale, a.answer)),
                                    (worked_prompt(b), worked_answer(b.rationale, b.answer))])
    assert found["examples"][0]["prompt"] == worked_prompt(b)
