"""Tokenwise parallel thought generation (Quiet-STaR, sec. 4.2 and fig. 3): a thought after every token at once.

For a batch of sequences, each of the `n_thoughts` copies of a sequence gets a thought after every thinking
position j. Every forward pass after the first adds one token to all thoughts at once: the inputs are one new
token per position, with position ids j + s, and the keys are the cached original tokens plus every earlier
step's thought tokens. The attention mask lets the step-s token of position j see the original tokens 1..j
and the tokens of its own thought (the "diagonal" of each earlier step), nothing of the other positions'
thoughts. So a thought of length T costs T + 2 passes (start, T tokens, end) for all positions together,
reusing the KV cache, instead of one generation per position.

After the end-of-thought token, the next `n_true` true tokens are teacher-forced the same way (the paper's
non-myopic loss): talk step k at position j inputs x_{j+k} and predicts x_{j+1+k}, mixed by the mixing head
with the ordinary hidden state at position j + k.

The paper scores every token of its text, so it thinks everywhere; here only answer tokens are scored, so
the positions can be restricted (`thinking_positions`) to those with a scored token among the next `n_true`:
a thought anywhere else has neither NLL nor reward, so leaving it out changes no loss and no gradient, and
it makes the queries (and each step's keys) a few answer positions instead of the whole prompt.
`reference.py` computes the same thing one position at a time, and
`tests/stages/quietstar/test_quietstar_parallel.py` checks they agree.
Exercise: `python benchmarks/bench_quietstar_parallel.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...inference.decoder import additive_mask, lm_head_of, new_cache, run_decoder
from ...models.formats.thoughts import MixingHead
from ...inference.thought_sampling import ThoughtSampler
from ...models.formats.thoughts import ThoughtTokens

Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ThoughtShape:
    """How much thinking: `thought_length` sampled tokens between the delimiters, `n_thoughts` per position,
    and `n_true` true tokens predicted after each thought (the authors' n_ahead = thought_length + 2,
    n_ahead_talk = n_true, n_passes = n_thoughts)."""

    thought_length: int
    n_thoughts: int = 2
    n_true: int = 4

    def __post_init__(self):
        if self.thought_length < 0 or self.n_thoughts < 1 or self.n_true < 1:
            raise ValueError(f"invalid thought shape {self}")

    @property
    def passes(self) -> int:
        """Forward passes after the ordinary one: start, thought tokens, end, then n_true - 1 teacher-forced."""
        return self.thought_length + 2 + self.n_true - 1


@dataclass
class ThoughtRollout:
    """Everything the loss needs. B = batch, K = thoughts per position, N = n_true, P = thinking positions
    (slots), L = length, H = hidden. Slot p of row b is the thought after token `at[b, p]`."""

    at: torch.Tensor               # (B, P) the position each slot thinks after
    slot_valid: torch.Tensor       # (B, P) False for filler slots of rows with fewer thinking positions
    thought_ids: torch.Tensor      # (B, K, P, T) sampled thought tokens
    thought_logprob: torch.Tensor  # (B, K, P) summed log-prob of the sampled thought tokens (differentiable)
    base_hidden: torch.Tensor      # (B, L, H) ordinary final hidden states at every position
    talk_hidden: torch.Tensor      # (B, K, N, P, H) hidden states after the thought (teacher-forced steps)
    mixed_hidden: torch.Tensor     # (B, K, N, P, H) mixing head output
    mix_weight: torch.Tensor       # (B, K, N, P)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding (left or right), as HF generation computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def shifted(x: torch.Tensor, k: int, dim: int, fill=0) -> torch.Tensor:
    """x moved k steps left along `dim` (element j becomes x[j + k]); the last k entries are `fill`."""
    if k == 0:
        return x
    length = x.shape[dim]
    kept = x.narrow(dim, min(k, length), max(0, length - k))
    pad_shape = list(x.shape)
    pad_shape[dim] = min(k, length)
    return torch.cat([kept, torch.full(pad_shape, fill, dtype=x.dtype, device=x.device)], dim=dim)


def gather_at(x: torch.Tensor, at: torch.Tensor, fill=0) -> torch.Tensor:
    """x[b, at[b, p]] for x of shape (B, L, ...) and indices (B, P); indices >= L give `fill`."""
    length = x.shape[1]
    inside = at < length
    index = at.clamp(max=length - 1)
    picked = x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:]))
    return picked.masked_fill(~inside.view(*inside.shape, *([1] * (x.dim() - 2))), fill)


def thinking_slots(think: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(at, slot_valid) listing, per row and in order, the positions where `think` (B, L) is True."""
    counts = think.sum(1)
    width = max(int(counts.max()), 1) if think.numel() else 1
    # a stable sort puts the True positions first, in their original order
    order = torch.sort((~think).to(torch.int8), dim=1, stable=True).indices[:, :width]
    slot_valid = torch.arange(width, device=think.device)[None, :] < counts[:, None]
    return order, slot_valid


def thinking_positions(attention_mask: torch.Tensor, scored: torch.Tensor | None, n_true: int) -> torch.Tensor:
    """Positions whose thought can matter: one of the next `n_true` tokens is scored (every real one if None).

    A thought anywhere else has no target, hence no NLL and no reward: skipping it changes no loss or gradient.
    """
    valid = attention_mask.bool()
    if scored is None:
        return valid
    reach = torch.zeros_like(valid)
    for k in range(n_true):
        reach |= shifted(scored.bool(), k + 1, dim=1, fill=False)
    return reach & valid


def _base_allowed(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L): causal over non-padding keys; the diagonal always, so padding rows never see nothing."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye).unsqueeze(1)


def think_in_parallel(
    model,
    head: MixingHead,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    tokens: ThoughtTokens,
    shape: ThoughtShape,
    sampler: ThoughtSampler,
    embed: Embed | None = None,
    lm_head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    think: torch.Tensor | None = None,
) -> ThoughtRollout:
    """Sample `shape.n_thoughts` thoughts after every thinking position of every sequence, all in parallel.

    `think` (B, L) selects the positions (default: every real token; see `thinking_positions`). `embed` maps
    ids to input vectors and `lm_head` hidden states to logits (defaults: the model's own; training passes a
    `ThoughtEmbedding` and its `output_head()` so the delimiter rows train with their gradient weight).
    """
    embed = embed or model.get_input_embeddings()
    lm_head = lm_head or lm_head_of(model)
    batch, length = input_ids.shape
    k_thoughts, t_len = shape.n_thoughts, shape.thought_length
    rows = batch * k_thoughts
    valid = attention_mask.bool()
    positions = positions_from_mask(attention_mask)
    at, slot_valid = thinking_slots(valid if think is None else think.bool() & valid)
    slots = at.shape[1]

    base_embeds = embed(input_ids)
    dtype = base_embeds.dtype
    cache = new_cache(model)
    base_hidden = run_decoder(
        model, base_embeds, attention_mask=additive_mask(_base_allowed(valid), dtype), position_ids=positions,
        cache=cache,
    )
    # the thoughts of one sequence share its prefix: compute it once, then copy the cache per thought
    cache.batch_repeat_interleave(k_thoughts)

    def per_row(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(k_thoughts, dim=0)

    # padding positions give a zero base state to mixing (never scored; zero keeps it defined)
    base_masked = base_hidden.masked_fill(~valid.unsqueeze(-1), 0.0)
    at_rows = per_row(at)
    slot_positions = per_row(gather_at(positions, at))
    # slot p sees the real tokens up to its position, then (each later step) only its own thought's tokens
    keys = torch.arange(length, device=input_ids.device)
    sees_text = (keys[None, None, :] <= at[:, :, None]) & valid[:, None, :]
    allowed = per_row(sees_text | (keys[None, None, :] == at[:, :, None])).unsqueeze(1)
    diagonal = torch.eye(slots, dtype=torch.bool, device=input_ids.device).expand(rows, 1, slots, slots)

    thought_ids, thought_logps, talk, mixed, weights = [], [], [], [], []
    fixed = lambda token_id: embed(torch.full_like(at_rows, token_id))  # noqa: E731
    next_embeds = fixed(tokens.start_id)
    for step in range(1, shape.passes + 1):
        allowed = torch.cat([allowed, diagonal], dim=-1)
        hidden = run_decoder(
            model, next_embeds, attention_mask=additive_mask(allowed, dtype),
            position_ids=slot_positions + step, cache=cache,
        )
        if step <= t_len:
            ids, logp = sampler.sample(lm_head(hidden), step)
            thought_ids.append(ids)
            thought_logps.append(logp)
            next_embeds = embed(ids)
        elif step == t_len + 1:
            next_embeds = fixed(tokens.end_id)
        if step >= t_len + 2:
            k = step - (t_len + 2)
            mixed_k, w_k = head(per_row(gather_at(base_masked, at + k)), hidden)
            talk.append(hidden)
            mixed.append(mixed_k)
            weights.append(w_k)
            # teacher forcing: the true token x_{j+k+1} follows, whatever the model predicted
            # (past the end the filler id 0 is fed; those predictions have no target and are never scored)
            next_embeds = embed(per_row(gather_at(input_ids, at + k + 1)))

    def per_sequence(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(batch, k_thoughts, *x.shape[1:])

    if t_len:
        ids_tensor = torch.stack(thought_ids, dim=-1)
        logp_tensor = torch.stack(thought_logps, dim=-1).sum(-1)
    else:
        ids_tensor = torch.zeros(rows, slots, 0, dtype=torch.long, device=input_ids.device)
        logp_tensor = torch.zeros(rows, slots, dtype=base_hidden.dtype, device=input_ids.device)
    return ThoughtRollout(
        at=at,
        slot_valid=slot_valid,
        thought_ids=per_sequence(ids_tensor),
        thought_logprob=per_sequence(logp_tensor),
        base_hidden=base_hidden,
        talk_hidden=per_sequence(torch.stack(talk, dim=1)),
        mixed_hidden=per_sequence(torch.stack(mixed, dim=1)),
        mix_weight=per_sequence(torch.stack(weights, dim=1)),
    )
