"""The mixing head starts as exactly the base model and can learn from there."""

from __future__ import annotations

import torch
from quietstar_helpers import batch_of, random_head

from agent_forge.models.formats.thoughts.mixing import MixingHead
from agent_forge.stages.quietstar.parallel import ThoughtShape, gather_at, think_in_parallel
from agent_forge.inference.thought_sampling import ThoughtSampler


def test_untrained_head_reproduces_base_predictions_exactly(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "max 9 1 4"])
    shape = ThoughtShape(thought_length=2, n_thoughts=2, n_true=3)
    with torch.no_grad():
        out = think_in_parallel(
            model, MixingHead(model.config.hidden_size), ids, mask, tokens=tokens, shape=shape,
            sampler=ThoughtSampler(tokens, 1.0, seed=0),
        )
        base_logits = model(input_ids=ids, attention_mask=mask).logits
        lm_head = model.get_output_embeddings()
        assert torch.count_nonzero(out.mix_weight) == 0
        for k in range(shape.n_true):
            # talk step k after position j predicts token j+1+k from the base state at j+k
            expected = gather_at(out.base_hidden, out.at + k)
            valid = gather_at(mask.bool(), out.at + k, fill=False) & out.slot_valid
            for t in range(shape.n_thoughts):
                assert torch.equal(out.mixed_hidden[:, t, k][valid], expected[valid])
        # and those base states are the model's ordinary predictions
        torch.testing.assert_close(lm_head(out.base_hidden)[mask.bool()], base_logits[mask.bool()])
        # while the thoughts do change the unmixed post-thought states
        assert not torch.allclose(out.talk_hidden[:, :, 0], out.base_hidden[:, None])


def test_zero_init_still_receives_gradient():
    head = MixingHead(8)
    base, thought = torch.randn(5, 8), torch.randn(5, 8)
    mixed, w = head(base, thought)
    assert torch.equal(mixed, base) and torch.count_nonzero(w) == 0
    target = thought.detach()
    ((mixed - target) ** 2).sum().backward()
    assert head.output.weight.grad.abs().sum() > 0


def test_weight_interpolates_between_the_two_states():
    head = random_head(8)
    base, thought = torch.randn(4, 8), torch.randn(4, 8)
    mixed, w = head(base, thought)
    torch.testing.assert_close(mixed, (1 - w[:, None]) * base + w[:, None] * thought)
