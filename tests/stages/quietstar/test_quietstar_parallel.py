"""The parallel thought generator equals the naive per-position reference, and its mask is the paper's."""

from __future__ import annotations

import pytest
import torch

from agent_forge.inference.decoder import decoder_of
from agent_forge.stages.quietstar.parallel import ThoughtShape, think_in_parallel, thinking_positions
from agent_forge.stages.quietstar.reference import think_naively
from agent_forge.inference.thought_sampling import ThoughtSampler

from quietstar_helpers import batch_of, random_head

TEXTS = ["12+34=46", "a=1; b?", "max 9 1 4\n9"]


def _both(model, head, ids, mask, tokens, shape, sampler):
    with torch.no_grad():
        fast = think_in_parallel(model, head, ids, mask, tokens=tokens, shape=shape, sampler=sampler)
        slow = think_naively(model, head, ids, mask, tokens=tokens, shape=shape, sampler=sampler)
    return fast, slow


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_parallel_equals_naive_reference(tiny_thinker, temperature, padding_side):
    model, tokenizer, tokens = tiny_thinker
    head = random_head(model.config.hidden_size)
    ids, mask = batch_of(tokenizer, TEXTS, padding_side)
    shape = ThoughtShape(thought_length=3, n_thoughts=2, n_true=3)
    sampler = ThoughtSampler(tokens, temperature, seed=5)
    fast, slow = _both(model, head, ids, mask, tokens, shape, sampler)

    valid = mask.bool()
    assert torch.equal(fast.at, slow.at) and torch.equal(fast.slot_valid, slow.slot_valid)
    slots = fast.slot_valid
    assert torch.equal(slots.sum(1), valid.sum(1))  # by default every real token gets a thought
    per_thought = slots[:, None, :].expand(-1, shape.n_thoughts, -1)
    per_step = slots[:, None, None, :].expand(-1, shape.n_thoughts, shape.n_true, -1)
    assert torch.equal(fast.thought_ids[per_thought], slow.thought_ids[per_thought])
    # thoughts are not all identical (the comparison would be vacuous otherwise)
    assert fast.thought_ids[per_thought].unique(dim=0).shape[0] > 1
    torch.testing.assert_close(fast.base_hidden[valid], slow.base_hidden[valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.talk_hidden[per_step], slow.talk_hidden[per_step], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.mix_weight[per_step], slow.mix_weight[per_step], atol=1e-5, rtol=1e-4)
    lm_head = model.get_output_embeddings()
    torch.testing.assert_close(
        lm_head(fast.mixed_hidden)[per_step], lm_head(slow.mixed_hidden)[per_step], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(fast.thought_logprob[per_thought], slow.thought_logprob[per_thought], atol=1e-4, rtol=1e-4)


def test_thinking_only_where_a_target_is_scored_equals_thinking_everywhere(tiny_thinker):
    """Restricting thoughts to some positions gives, at those positions, what thinking everywhere gives."""
    model, tokenizer, tokens = tiny_thinker
    head = random_head(model.config.hidden_size)
    ids, mask = batch_of(tokenizer, TEXTS)
    scored = torch.zeros_like(mask, dtype=torch.bool)
    scored[0, 6:8] = True
    scored[2, 9:11] = True
    think = thinking_positions(mask, scored, n_true=2)
    assert think.sum(1).tolist() == [3, 0, 3]  # positions 4..6 reach targets 6..7 within two tokens
    shape = ThoughtShape(thought_length=3, n_thoughts=2, n_true=2)
    greedy = ThoughtSampler(tokens, 0.0)
    with torch.no_grad():
        some = think_in_parallel(model, head, ids, mask, tokens=tokens, shape=shape, sampler=greedy, think=think)
        every = think_in_parallel(model, head, ids, mask, tokens=tokens, shape=shape, sampler=greedy)
        slow = think_naively(model, head, ids, mask, tokens=tokens, shape=shape, sampler=greedy, think=think)
    assert some.mixed_hidden.shape[3] == 3 and not some.slot_valid[1].any()
    for b in (0, 2):
        for p, j in enumerate(some.at[b].tolist()):
            assert torch.equal(some.thought_ids[b, :, p], every.thought_ids[b, :, j])
            torch.testing.assert_close(some.mixed_hidden[b, :, :, p], every.mixed_hidden[b, :, :, j], atol=1e-5, rtol=1e-4)
            assert torch.equal(some.thought_ids[b, :, p], slow.thought_ids[b, :, p])
            torch.testing.assert_close(some.mixed_hidden[b, :, :, p], slow.mixed_hidden[b, :, :, p], atol=1e-5, rtol=1e-4)


def test_sampled_thoughts_differ_between_the_thoughts_of_one_position(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, TEXTS)
    shape = ThoughtShape(thought_length=4, n_thoughts=2, n_true=1)
    with torch.no_grad():
        out = think_in_parallel(
            model, random_head(32), ids, mask, tokens=tokens, shape=shape, sampler=ThoughtSampler(tokens, 1.0, seed=0)
        )
    assert not torch.equal(out.thought_ids[:, 0], out.thought_ids[:, 1])
    # delimiters are never sampled inside a thought
    assert not torch.isin(out.thought_ids, torch.tensor(tokens.ids)).any()


def test_thought_at_j_ignores_later_tokens(tiny_thinker):
    """The mask lets position j's thought see x_1..x_j only: changing later text changes nothing up to j."""
    model, tokenizer, tokens = tiny_thinker
    shape = ThoughtShape(thought_length=3, n_thoughts=1, n_true=1)
    head = random_head(32)
    outs = []
    for text in ["12+34=46", "12+39=51"]:  # separate calls: row 0 of each reads the same sampling noise
        ids, mask = batch_of(tokenizer, [text])
        with torch.no_grad():
            outs.append(think_in_parallel(
                model, head, ids, mask, tokens=tokens, shape=shape, sampler=ThoughtSampler(tokens, 1.0, seed=2)
            ))
    a, b = outs
    j = 4  # positions 0..4 are "<bos>12+3" in both texts
    assert torch.equal(a.thought_ids[..., : j + 1, :], b.thought_ids[..., : j + 1, :])
    torch.testing.assert_close(a.talk_hidden[..., : j + 1, :], b.talk_hidden[..., : j + 1, :])
    assert not torch.allclose(a.talk_hidden[..., j + 1 :, :], b.talk_hidden[..., j + 1 :, :])


def test_one_forward_pass_per_thought_token_for_all_positions(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, TEXTS)
    shape = ThoughtShape(thought_length=5, n_thoughts=2, n_true=4)
    calls = []
    hook = decoder_of(model).register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            think_in_parallel(model, random_head(32), ids, mask, tokens=tokens, shape=shape,
                              sampler=ThoughtSampler(tokens, 1.0))
    finally:
        hook.remove()
    # the ordinary pass, start + 5 thought tokens + end, then 3 teacher-forced true tokens
    assert len(calls) == 1 + shape.passes == 1 + 7 + 3
