"""Batched text generation with a KV cache: greedy or sampled, cut at the answer terminator and stop strings.

Prompts are rendered with the tokenizer's PromptFormat (chat template or `prompt + "\\n"`), sorted by length
into batches, left-padded (with position ids that skip the padding, so a padded row computes what it would
alone), prefilled once and then extended one token per step from the cache. A row stops at the terminator or
eos, or once its text contains a stop string; the batch stops when every row has.

This is a hand-written loop rather than `model.generate`. Measured side by side on the default tiny model
(128 prompts, batch 32, one CPU thread) it was 1.2x faster (4977 vs 4253 tokens/s greedy; 3266 vs 2672 sampled
with rows ending at different times), because rows that finish leave the batch and the cache. It also gives
seeded sampling without touching the global RNG and returns the sampled ids, which policy-gradient training
scores.

Exercise: `pytest tests/models/test_generate_batched.py`.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .formats.ternary.layer import frozen_ternary_weights
from .prompting import PromptFormat, pad_id, prompt_format


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] | None = None,
    batch_size: int = 32,
    seed: int | None = None,
    render: bool = True,
    n: int = 1,
    skip_special_tokens: bool = True,
    progress: bool = True,
) -> list[str]:
    """Generate a completion for every prompt; the text is cut before the terminator and the first stop string.

    Greedy when `temperature == 0`; otherwise samples from the tempered distribution restricted to the top-p
    nucleus, reproducibly for a given `seed` and batch size (`seed=None` draws from torch's global RNG).
    `n > 1` draws several samples per prompt and returns a flat, prompt-major list: `outputs[i * n + j]` is
    sample j of prompt i (`generate_groups` returns them grouped).
    `render=False` feeds prompts verbatim (already rendered text).
    """
    fmt = prompt_format(tokenizer)
    prompt_ids = fmt.encode_prompts(prompts, render=render)
    generated = generate_token_ids(
        model, tokenizer, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        stop=stop, batch_size=batch_size, seed=seed, n=n, fmt=fmt, skip_special_tokens=skip_special_tokens,
        progress=progress,
    )
    return [completion_text(tokenizer, ids, fmt, stop, skip_special_tokens) for ids in generated]


def generate_groups(model, tokenizer, prompts: Sequence[str], *, n: int, **kwargs) -> list[list[str]]:
    """`generate` with `n` samples per prompt, grouped: `result[i]` holds the n samples of prompt i."""
    flat = generate(model, tokenizer, prompts, n=n, **kwargs)
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


def completion_text(
    tokenizer, ids: Sequence[int], fmt: PromptFormat | None = None, stop: Sequence[str] | None = None,
    skip_special_tokens: bool = True,
) -> str:
    """Decode generated ids, dropping everything from the first terminator/eos and from the first stop string."""
    fmt = fmt or prompt_format(tokenizer)
    ids = list(ids)
    for i, token in enumerate(ids):
        if token in fmt.stop_ids:
            ids = ids[:i]
            break
    text = tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
    return _cut_at_stop(text, stop)


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    if stop:
        hits = [text.find(s) for s in stop if s and s in text]
        if hits:
            return text[: min(hits)]
    return text


@torch.no_grad()
def generate_token_ids(
    model,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] | None = None,
    batch_size: int = 32,
    seed: int | None = None,
    n: int = 1,
    fmt: PromptFormat | None = None,
    skip_special_tokens: bool = True,
    progress: bool = True,
) -> list[list[int]]:
    """Generated token ids per (prompt, sample), prompt-major; each ends with the stop token if one was produced.

    Rows that stopped on a stop string end with the token that completed it. Used by `generate`, and by
    callers that need the sampled ids themselves (policy-gradient training scores exactly those tokens).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
    fmt = fmt or prompt_format(tokenizer)
    rows = [list(ids) for ids in prompt_ids for _ in range(n)]
    results: list[list[int]] = [[] for _ in rows]
    if not rows or max_new_tokens <= 0:
        return results
    device = next(model.parameters()).device
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    # longest first: the first batch is the slowest, so the progress bar's estimate errs on the safe side
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if temperature == 0 and len(rows) == 1 and rows[0]:
        # one greedy sequence: a packed model decodes it in the C step when it can (no per-layer dispatch)
        ids = _decode_single_packed(model, tokenizer, rows[0], max_new_tokens=max_new_tokens, stop=stop, fmt=fmt,
                                    skip_special_tokens=skip_special_tokens)
        if ids is not None:
            return [ids]
    was_training = model.training
    model.eval()
    try:
        # a BitLinear model quantizes its weights once for the whole generation, not at every decode step
        with frozen_ternary_weights(model):
            for batch in tqdm(batches, desc="generate", disable=not progress or len(batches) < 2, leave=False):
                outputs = _decode_batch(
                    model, tokenizer, [rows[i] for i in batch], device=device, max_new_tokens=max_new_tokens,
                    temperature=temperature, top_p=top_p, stop=stop, generator=generator, fmt=fmt,
                    skip_special_tokens=skip_special_tokens,
                )
                for i, ids in zip(batch, outputs):
                    results[i] = ids
    finally:
        model.train(was_training)
    return results


def _decode_batch(
    model, tokenizer, rows: list[list[int]], *, device, max_new_tokens: int, temperature: float, top_p: float,
    stop: Sequence[str] | None, generator, fmt: PromptFormat, skip_special_tokens: bool,
) -> list[list[int]]:
    width = max(len(r) for r in rows)
    pad = pad_id(tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    # positions count real tokens only, so a left-padded row sees the positions it would have alone
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache_kw = _cache_keyword(model)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
        **_last_logits_only(model),
    )
    cache = _cache_of(out)
    logits = out.logits[:, -1]
    next_position = position_ids[:, -1:] + 1
    stop_ids = set(fmt.stop_ids)
    generated: list[list[int]] = [[] for _ in rows]
    active = list(range(len(rows)))  # the batch row behind each cache slot
    finished: set[int] = set()
    suppressed = _suppressed_ids(model)
    for step in range(max_new_tokens):
        if suppressed is not None:
            # tokens the model must never emit as text (e.g. Quiet-STaR's thought delimiters, whose tied
            # embedding rows keep their output logits alive)
            logits = logits.index_fill(-1, suppressed.to(logits.device), float("-inf"))
        tokens = _next_tokens(logits, temperature, top_p, generator)
        keep = []  # cache slots whose row goes on
        for slot, (row, token) in enumerate(zip(active, tokens.tolist())):
            if row in finished:
                continue
            generated[row].append(token)
            if token in stop_ids or (stop and _has_stop(tokenizer, generated[row], stop, skip_special_tokens)):
                finished.add(row)
            else:
                keep.append(slot)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active) and hasattr(cache, "batch_select_indices"):
            # finished rows leave the batch: the remaining steps compute only what is still needed
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            tokens, attention_mask, next_position = tokens[index], attention_mask[index], next_position[index]
            active = [active[slot] for slot in keep]
        elif len(keep) < len(active):
            tokens = torch.where(_mask_of(len(active), keep, device), tokens, torch.full_like(tokens, pad))
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
        out = model(
            input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_position, use_cache=True,
            **{cache_kw: cache},
        )
        cache = _cache_of(out)
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return generated


def _decode_single_packed(
    model, tokenizer, row: list[int], *, max_new_tokens: int, stop: Sequence[str] | None, fmt: PromptFormat,
    skip_special_tokens: bool,
) -> list[int] | None:
    """Greedy tokens of one prompt from the packed model's whole-step C decoder (`PackedDecoder`), or None when
    the model is not one it can run as it is now (then the caller takes the batched path).

    The tokens are what the layer-by-layer path computes up to float summation order in norms and attention
    (a near-tie may break the other way); the int8 LM head keeps the argmax exact. Suppressed tokens need every
    logit exact, so a model with them decodes with the fp32 head and masks them here."""
    from .formats.ternary.decode import decoder_for

    suppressed = _suppressed_ids(model)
    decoder = decoder_for(model, int8_head=suppressed is None)
    if decoder is None:
        return None
    if decoder.max_positions and len(row) + max_new_tokens > decoder.max_positions:
        return None  # the batched path reports the overflow as transformers does

    def pick(token: int) -> int:
        if suppressed is None:
            return token
        logits = decoder.logits.index_fill(0, suppressed, float("-inf"))
        return int(logits.argmax())

    decoder.reset()
    stop_ids = set(fmt.stop_ids)
    generated: list[int] = []
    token = pick(decoder.feed(row))
    while True:
        generated.append(token)
        if token in stop_ids or (stop and _has_stop(tokenizer, generated, stop, skip_special_tokens)):
            break
        if len(generated) == max_new_tokens:
            break
        token = pick(decoder.step(token))
    return generated


def _has_stop(tokenizer, ids: list[int], stop: Sequence[str], skip_special_tokens: bool) -> bool:
    text = tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
    return any(s and s in text for s in stop)


def _mask_of(size: int, keep: list[int], device) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[keep] = True
    return mask


def _cache_keyword(model) -> str:
    """transformers 5 renamed the forward argument `past_key_values` to `cache`; accept either version."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _suppressed_ids(model) -> torch.Tensor | None:
    ids = getattr(getattr(model, "generation_config", None), "suppress_tokens", None)
    return torch.tensor(sorted(set(ids)), dtype=torch.long) if ids else None


def _next_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p: drop a token if the mass before it already does
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, sorted_idx, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


_LAST_LOGITS_KW: dict[type, dict] = {}


def _last_logits_only(model) -> dict:
    """Ask the prefill for the last position's logits only, where the model supports it (saves vocab x length)."""
    cls = type(model)
    if cls not in _LAST_LOGITS_KW:
        params = inspect.signature(model.forward).parameters
        if "logits_to_keep" in params:
            _LAST_LOGITS_KW[cls] = {"logits_to_keep": 1}
        elif "num_logits_to_keep" in params:
            _LAST_LOGITS_KW[cls] = {"num_logits_to_keep": 1}
        else:
            _LAST_LOGITS_KW[cls] = {}
    return _LAST_LOGITS_KW[cls]
