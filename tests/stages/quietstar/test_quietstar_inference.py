"""Thinking at inference: the same thought and mixed prediction as training, thoughts hidden from the answer."""

from __future__ import annotations

import torch
from quietstar_helpers import random_head

from agent_forge.models import generate, prompt_format
from agent_forge.inference.thinking import generate_with_thoughts
from agent_forge.models.formats.thoughts.mixing import MixingHead
from agent_forge.stages.quietstar.parallel import ThoughtShape, think_in_parallel
from agent_forge.inference.thought_sampling import ThoughtSampler
from agent_forge.models.formats.thoughts.tokens import mask_thought_logits

PROMPTS = ["12+34", "max 9 1 4", "a=1; b=2; a?"]


def test_first_thought_and_token_match_the_training_computation(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    head = random_head(model.config.hidden_size)
    length = 4
    results = generate_with_thoughts(
        model, tokenizer, head, PROMPTS, thought_length=length, max_new_tokens=3, stride=1, progress=False
    )
    fmt = prompt_format(tokenizer)
    lm_head = model.get_output_embeddings()
    for prompt, result in zip(PROMPTS, results):
        ids = torch.tensor([fmt.encode_prompts([prompt])[0]])
        with torch.no_grad():
            out = think_in_parallel(
                model, head, ids, torch.ones_like(ids), tokens=tokens, shape=ThoughtShape(length, 1, 1),
                sampler=ThoughtSampler(tokens, 0.0),
            )
            first_token = mask_thought_logits(lm_head(out.mixed_hidden[0, 0, 0, -1]), tokens).argmax()
        assert result.thoughts[0] == tokenizer.decode(out.thought_ids[0, 0, -1].tolist(), skip_special_tokens=False)
        produced = tokenizer.encode(result.answer, add_special_tokens=False)
        expected = int(first_token)
        if expected in fmt.stop_ids:
            assert result.answer == ""
        else:
            assert produced[0] == expected


def test_thinking_off_is_ordinary_greedy_generation(tiny_thinker):
    model, tokenizer, _ = tiny_thinker
    plain = generate(model, tokenizer, PROMPTS, max_new_tokens=6, progress=False)
    silent = generate_with_thoughts(
        model, tokenizer, MixingHead(32), PROMPTS, thought_length=4, max_new_tokens=6, think=False, progress=False
    )
    assert [r.answer for r in silent] == plain
    assert all(r.thoughts == [] for r in silent)


def test_untrained_head_answers_exactly_like_the_model_without_thoughts(tiny_thinker):
    model, tokenizer, _ = tiny_thinker
    with_thoughts = generate_with_thoughts(
        model, tokenizer, MixingHead(32), PROMPTS, thought_length=3, max_new_tokens=6, progress=False
    )
    without = generate_with_thoughts(
        model, tokenizer, MixingHead(32), PROMPTS, thought_length=3, max_new_tokens=6, think=False, progress=False
    )
    assert [r.answer for r in with_thoughts] == [r.answer for r in without]
    assert all(len(r.thoughts) >= 1 for r in with_thoughts)


def test_stride_sets_how_often_the_model_thinks(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    head = random_head(32)
    kwargs = dict(max_new_tokens=7, thought_length=2, progress=False)
    every = generate_with_thoughts(model, tokenizer, head, PROMPTS, stride=1, **kwargs)
    third = generate_with_thoughts(model, tokenizer, head, PROMPTS, stride=3, **kwargs)
    first_only = generate_with_thoughts(model, tokenizer, head, PROMPTS, stride=0, **kwargs)
    fmt = prompt_format(tokenizer)
    for e, t, f in zip(every, third, first_only):
        n = len(tokenizer.encode(e.answer, add_special_tokens=False))
        emitted = n + (1 if n < 7 else 0)  # a stop token counts as a generated position
        assert len(e.thoughts) == emitted
        assert len(f.thoughts) == 1
        m = len(tokenizer.encode(t.answer, add_special_tokens=False))
        t_emitted = m + (1 if m < 7 else 0)
        assert len(t.thoughts) == len(range(0, t_emitted, 3))
    # thoughts never leak into answers, and delimiters are never emitted
    start, end = tokenizer.convert_ids_to_tokens(list(tokens.ids))
    assert all(start not in r.answer and end not in r.answer for r in every + third + first_only)
    assert fmt.terminator_text not in "".join(r.answer for r in every)


def test_without_a_head_the_post_thought_prediction_is_used(tiny_thinker):
    model, tokenizer, _ = tiny_thinker
    out = generate_with_thoughts(model, tokenizer, None, PROMPTS, thought_length=2, max_new_tokens=4, progress=False)
    assert len(out) == len(PROMPTS) and all(len(r.thoughts) >= 1 for r in out)


def test_sampled_thoughts_are_reproducible(tiny_thinker):
    model, tokenizer, _ = tiny_thinker
    head = random_head(32)
    kwargs = dict(thought_length=4, max_new_tokens=4, thought_temperature=1.0, progress=False)
    a = generate_with_thoughts(model, tokenizer, head, PROMPTS, seed=3, **kwargs)
    b = generate_with_thoughts(model, tokenizer, head, PROMPTS, seed=3, **kwargs)
    c = generate_with_thoughts(model, tokenizer, head, PROMPTS, seed=4, **kwargs)
    assert a == b
    assert [r.thoughts for r in a] != [r.thoughts for r in c]
