"""Running a causal LM's decoder stack on embeddings with our own attention mask and KV cache.

Quiet-STaR needs three things a plain `model(input_ids)` call does not give: feeding embeddings (the trained
thought delimiters), a custom 4-D attention mask (thoughts see only their own position's prefix), and the
final hidden states before the LM head (the mixing head works on them). This module wraps those calls for any
`transformers` causal LM whose decoder accepts `inputs_embeds`, a 4-D additive mask and a `Cache`, and hides
the rename of `past_key_values` to `cache` in transformers 5. Exercise: `pytest tests/stages/quietstar`.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
from transformers import DynamicCache


def decoder_of(model) -> torch.nn.Module:
    """The model's transformer body (e.g. `LlamaForCausalLM.model`), which returns final hidden states."""
    return getattr(model, model.base_model_prefix)


def lm_head_of(model) -> torch.nn.Module:
    return model.get_output_embeddings()


@lru_cache(maxsize=None)
def _cache_kwarg(forward_owner: type) -> str:
    params = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model) -> DynamicCache:
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # transformers 4.x DynamicCache takes no config
        return DynamicCache()


def run_decoder(
    model,
    embeds: torch.Tensor,
    *,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache: DynamicCache,
) -> torch.Tensor:
    """Final hidden states (batch, query, hidden) for `embeds`; keys/values are appended to `cache` in place.

    `attention_mask` is either 2-D padding (batch, cached + query), letting the model build its causal mask,
    or a ready 4-D additive mask (batch, 1, query, cached + query).
    """
    decoder = decoder_of(model)
    kwargs = {_cache_kwarg(type(decoder)): cache}
    out = decoder(
        inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, **kwargs
    )
    return out.last_hidden_state


def truncate_cache(cache: DynamicCache, length: int) -> None:
    """Drop everything after the first `length` cached positions (used to forget a thought at inference)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean `allowed` (True = may attend) as the additive float mask every attention backend accepts."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)
