"""The naive way to think after every token: one separate generation per position and thought.

For each sequence, thought and position j, the prefix x_1..x_j is run through the model, then the thought is
generated token by token with an ordinary KV cache (start, T sampled tokens, end) and the next true tokens
are teacher-forced after it. This is what `parallel.think_in_parallel` must equal (same thoughts for the same
sampler, same mixed predictions within float tolerance); it is also the baseline of
`benchmarks/bench_quietstar_parallel.py`. Exercise: `pytest tests/stages/quietstar/test_quietstar_parallel.py`.
"""

from __future__ import annotations

import torch

from ...inference.decoder import lm_head_of, new_cache, run_decoder
from ...models.formats.thoughts import MixingHead
from .parallel import Embed, ThoughtRollout, ThoughtShape, positions_from_mask, thinking_slots
from ...inference.thought_sampling import ThoughtSampler
from ...models.formats.thoughts import ThoughtTokens


def _ones_mask(length: int, device) -> torch.Tensor:
    return torch.ones(1, length, dtype=torch.long, device=device)


def think_naively(
    model,
    head: MixingHead,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    tokens: ThoughtTokens,
    shape: ThoughtShape,
    sampler: ThoughtSampler,
    embed: Embed | None = None,
    think: torch.Tensor | None = None,
) -> ThoughtRollout:
    """Same contract as `think_in_parallel`; entries of filler slots are left at zero."""
    embed = embed or model.get_input_embeddings()
    lm_head = lm_head_of(model)
    device = input_ids.device
    batch, length = input_ids.shape
    k_thoughts, t_len, n_true = shape.n_thoughts, shape.thought_length, shape.n_true
    valid = attention_mask.bool()
    positions = positions_from_mask(attention_mask)
    at, slot_valid = thinking_slots(valid if think is None else think.bool() & valid)
    slots = at.shape[1]
    vocab = lm_head.weight.shape[0]
    # the parallel sampler draws noise for every (row, slot) at once; each position reads its own entry
    noises = {
        step: sampler.noise(step, (batch * k_thoughts, slots, vocab), device)
        for step in range(1, t_len + 1)
        if sampler.temperature > 0
    }

    hidden_size = model.config.hidden_size
    base_hidden = torch.zeros(batch, length, hidden_size, device=device)
    thought_ids = torch.zeros(batch, k_thoughts, slots, t_len, dtype=torch.long, device=device)
    thought_logprob = torch.zeros(batch, k_thoughts, slots, device=device)
    talk_hidden = torch.zeros(batch, k_thoughts, n_true, slots, hidden_size, device=device)
    mixed_hidden = torch.zeros_like(talk_hidden)
    mix_weight = torch.zeros(batch, k_thoughts, n_true, slots, device=device)

    for b in range(batch):
        kept = valid[b].nonzero().flatten()
        seq_ids = input_ids[b, kept].unsqueeze(0)
        full = run_decoder(
            model, embed(seq_ids), attention_mask=_ones_mask(seq_ids.shape[1], device),
            position_ids=torch.arange(seq_ids.shape[1], device=device).unsqueeze(0), cache=new_cache(model),
        )[0]
        base_hidden[b, kept] = full
        for t in range(k_thoughts):
            row = b * k_thoughts + t
            for p in range(slots):
                if not slot_valid[b, p]:
                    continue
                j = int(at[b, p])
                prefix = input_ids[b, kept[0] : j + 1].unsqueeze(0)
                n = prefix.shape[1]
                cache = new_cache(model)
                run_decoder(
                    model, embed(prefix), attention_mask=_ones_mask(n, device),
                    position_ids=torch.arange(n, device=device).unsqueeze(0), cache=cache,
                )
                token = torch.tensor([[tokens.start_id]], device=device)
                logp_sum = torch.zeros((), device=device)
                for step in range(1, shape.passes + 1):
                    hidden = run_decoder(
                        model, embed(token), attention_mask=_ones_mask(n + step, device),
                        position_ids=positions[b, j].view(1, 1) + step, cache=cache,
                    )[0, 0]
                    if step <= t_len:
                        logits = lm_head(hidden)
                        noise = noises[step][row, p] if noises else None
                        chosen = sampler.choose(logits, noise)
                        logp_sum = logp_sum + sampler.log_probs(logits)[chosen]
                        thought_ids[b, t, p, step - 1] = chosen
                        token = chosen.view(1, 1)
                    elif step == t_len + 1:
                        token = torch.tensor([[tokens.end_id]], device=device)
                    if step >= t_len + 2:
                        k = step - (t_len + 2)
                        base_k = base_hidden[b, j + k] if j + k < length else torch.zeros_like(hidden)
                        mixed, w = head(base_k, hidden)
                        talk_hidden[b, t, k, p] = hidden
                        mixed_hidden[b, t, k, p] = mixed
                        mix_weight[b, t, k, p] = w
                        nxt = j + k + 1
                        token = input_ids[b, nxt].view(1, 1) if nxt < length else torch.zeros(1, 1, dtype=torch.long, device=device)
                thought_logprob[b, t, p] = logp_sum
    return ThoughtRollout(
        at=at,
        slot_valid=slot_valid,
        thought_ids=thought_ids,
        thought_logprob=thought_logprob,
        base_hidden=base_hidden,
        talk_hidden=talk_hidden,
        mixed_hidden=mixed_hidden,
        mix_weight=mix_weight,
    )
