"""Answering with thoughts: think before a token, mix, emit the token, forget the thought.

Inference follows training exactly: before an answer token the model appends `<|startofthought|>`, samples
`thought_length` tokens (greedy by default), appends `<|endofthought|>`, and the mixing head interpolates the
hidden state after the thought with the ordinary one; the answer token is chosen from the mixed prediction
(delimiters masked) and appended to the visible text, while the thought is dropped from the KV cache, as each
training thought sees only the true text before it. `stride` thinks before every k-th answer token (1:
every token, as trained; 0: only before the first). `think=False` is ordinary generation with the delimiters
masked. Thoughts are never part of the answer; they come back alongside it.

`agent-forge chat --show-thoughts` calls `generate_with_thoughts`. Exercise:
`pytest tests/stages/quietstar/test_quietstar_inference.py`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from tqdm.auto import tqdm

from ..models import completion_text, pad_id, prompt_format
from ..models.formats.ternary import frozen_ternary_weights
from .decoder import lm_head_of, new_cache, run_decoder, truncate_cache
from ..models.formats.thoughts.mixing import MixingHead
from .thought_sampling import ThoughtSampler
from ..models.formats.thoughts.tokens import ThoughtTokens, mask_thought_logits, thought_tokens_of


class ThoughtfulAnswer(NamedTuple):
    """An answer (thoughts hidden) and the thoughts it was produced with, one per thinking point, in order."""

    answer: str
    thoughts: list[str]


def _should_think(index: int, stride: int) -> bool:
    return index == 0 if stride == 0 else index % stride == 0


@torch.no_grad()
def generate_with_thoughts(
    model,
    tokenizer,
    head: MixingHead | None,
    prompts: Sequence[str],
    *,
    thought_length: int,
    max_new_tokens: int = 32,
    think: bool = True,
    stride: int = 1,
    thought_temperature: float = 0.0,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
    render: bool = True,
    stop: Sequence[str] | None = None,
    tokens: ThoughtTokens | None = None,
    progress: bool = True,
) -> list[ThoughtfulAnswer]:
    """One `ThoughtfulAnswer` per prompt (answers cut at the terminator and stop strings, like `generate`).

    `head=None` (a model whose head was not carried along) uses the post-thought prediction as it is.
    """
    if stride < 0 or thought_length < 0:
        raise ValueError(f"stride and thought_length must be >= 0, got {stride}, {thought_length}")
    tokens = tokens or thought_tokens_of(tokenizer)
    fmt = prompt_format(tokenizer)
    prompt_ids = fmt.encode_prompts(prompts, render=render)
    results: list[ThoughtfulAnswer | None] = [None] * len(prompt_ids)
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    was_training = model.training
    model.eval()
    try:
        with frozen_ternary_weights(model):  # a BitLinear model quantizes its weights once, not at every step
            for number, batch in enumerate(tqdm(batches, desc="think+answer",
                                                disable=not progress or len(batches) < 2)):
                answers, thoughts = _answer_batch(
                    model, tokenizer, head, [prompt_ids[i] for i in batch], tokens=tokens, fmt=fmt,
                    thought_length=thought_length, max_new_tokens=max_new_tokens, think=think, stride=stride,
                    thought_temperature=thought_temperature, temperature=temperature, seed=seed * 7919 + number,
                )
                for i, ids, row_thoughts in zip(batch, answers, thoughts):
                    text = completion_text(tokenizer, ids, fmt, stop)
                    results[i] = ThoughtfulAnswer(text, row_thoughts)
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def _answer_batch(
    model, tokenizer, head, rows: list[list[int]], *, tokens: ThoughtTokens, fmt, thought_length: int,
    max_new_tokens: int, think: bool, stride: int, thought_temperature: float, temperature: float, seed: int,
) -> tuple[list[list[int]], list[list[str]]]:
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    lm_head = lm_head_of(model)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        attention[i, width - len(row):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    cache = new_cache(model)
    last_hidden = run_decoder(model, embed(input_ids), attention_mask=attention, position_ids=positions, cache=cache)[:, -1]
    next_position = positions[:, -1:] + 1
    generator = torch.Generator(device="cpu").manual_seed(seed)
    stop_ids = set(fmt.stop_ids)
    finished = [False] * len(rows)
    generated: list[list[int]] = [[] for _ in rows]
    thoughts: list[list[str]] = [[] for _ in rows]

    for index in range(max_new_tokens):
        hidden = last_hidden
        if think and _should_think(index, stride):
            sampler = ThoughtSampler(tokens, thought_temperature, seed=seed * 100_003 + index)
            thought_ids, after = _think(model, embed, lm_head, cache, attention, next_position, tokens, thought_length, sampler)
            if head is None:
                hidden = after
            else:
                hidden, _ = head(last_hidden, after)
            for i, ids in enumerate(thought_ids.tolist()):
                if not finished[i]:
                    thoughts[i].append(tokenizer.decode(ids, skip_special_tokens=False))
        logits = mask_thought_logits(lm_head(hidden).float(), tokens)
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1).cpu()
            chosen = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(device)
        else:
            chosen = logits.argmax(-1)
        for i, token in enumerate(chosen.tolist()):
            if not finished[i]:
                generated[i].append(token)
                finished[i] = token in stop_ids
        if all(finished) or index == max_new_tokens - 1:
            break
        attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
        last_hidden = run_decoder(
            model, embed(chosen[:, None]), attention_mask=attention, position_ids=next_position, cache=cache
        )[:, -1]
        next_position = next_position + 1
    return generated, thoughts


def _think(model, embed, lm_head, cache, attention, next_position, tokens, thought_length, sampler):
    """Run start, `thought_length` sampled tokens and end after the cached text; return (ids, hidden after end).

    The thought's keys are removed from the cache before returning, so the visible text never sees it.
    """
    kept = cache.get_seq_length()
    rows = attention.shape[0]
    token = torch.full((rows, 1), tokens.start_id, dtype=torch.long, device=attention.device)
    ids = []
    mask = attention
    for step in range(thought_length + 2):
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
        hidden = run_decoder(model, embed(token), attention_mask=mask, position_ids=next_position + step, cache=cache)[:, -1]
        if step < thought_length:
            chosen, _ = sampler.sample(lm_head(hidden), step + 1)
            ids.append(chosen)
            token = chosen[:, None]
        elif step == thought_length:
            token = torch.full((rows, 1), tokens.end_id, dtype=torch.long, device=attention.device)
    truncate_cache(cache, kept)
    thought = torch.stack(ids, dim=1) if ids else torch.zeros(rows, 0, dtype=torch.long, device=attention.device)
    return thought, hidden
