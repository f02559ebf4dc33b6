"""Add special tokens (Quiet-STaR's thought delimiters, tool-call markers, ...) to a model and its tokenizer.

The tokens become special, so they are never split and survive save/load. The embedding matrix (and the LM
head, tied or not) grows only if the new ids do not fit. New rows are set deterministically: to the mean
embedding of the tokens of `init_from` (Quiet-STaR starts its thought tokens from "---"; a string that splits
into several tokens is averaged), or to the mean of all existing rows when no `init_from` is given.

Exercise: `pytest tests/models/test_special_tokens.py`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tokenizers import AddedToken

from ..errors import ForgeError


def add_special_tokens(model, tokenizer, tokens: Sequence[str], init_from: str | None = None, *,
                       special: bool = True) -> list[int]:
    """Register `tokens` as special tokens, grow the embeddings to fit, initialise the new rows; return their ids.

    Tokens the tokenizer already has as added tokens keep their ids and rows untouched. `special=False` adds
    them as plain added tokens (never split, but kept by `decode(skip_special_tokens=True)`): tool-call markers
    are text the runtime must see, as in Hermes-style chat models.
    """
    tokens = list(tokens)
    if not tokens or any(not isinstance(t, str) or not t for t in tokens):
        raise ForgeError(f"special tokens must be non-empty strings, got {tokens!r}")
    source_ids = _init_ids(tokenizer, init_from) if init_from is not None else None
    known = set(getattr(tokenizer, "added_tokens_encoder", {}))
    fresh = [t for t in dict.fromkeys(tokens) if t not in known]
    if fresh:
        tokenizer.add_tokens([AddedToken(t, special=special, normalized=False) for t in fresh], special_tokens=special)
        if special:
            _register_as_extra_special(tokenizer, fresh)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    fresh_ids = tokenizer.convert_tokens_to_ids(fresh) if fresh else []
    rows = model.get_input_embeddings().weight.shape[0]
    needed = max(ids) + 1
    if needed > rows:
        # mean_resizing would draw the new rows at random; they are overwritten just below anyway
        model.resize_token_embeddings(needed, mean_resizing=False)
    if fresh_ids:
        _initialise_rows(model, fresh_ids, source_ids, old_rows=rows)
    return ids


def _init_ids(tokenizer, init_from: str) -> list[int]:
    ids = tokenizer(init_from, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ForgeError(f"init_from {init_from!r} encodes to no tokens")
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise ForgeError(f"init_from {init_from!r} contains characters this tokenizer does not know")
    return ids


def _register_as_extra_special(tokenizer, tokens: list[str]) -> None:
    """List the tokens among the tokenizer's special tokens too, so `skip_special_tokens` drops them."""
    for attr in ("extra_special_tokens", "additional_special_tokens"):
        current = getattr(tokenizer, attr, None)
        if isinstance(current, list):
            names = [str(t) for t in current]
            try:
                setattr(tokenizer, attr, current + [t for t in tokens if t not in names])
            except (AttributeError, ValueError, TypeError):
                continue
            return


@torch.no_grad()
def _initialise_rows(model, new_ids: list[int], source_ids: list[int] | None, old_rows: int) -> None:
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not matrices[0]:
        matrices.append(output.weight)
    for weight in matrices:
        if source_ids is not None:
            row = weight[source_ids].float().mean(0)
        else:
            row = weight[:old_rows].float().mean(0)
        weight[new_ids] = row.to(weight.dtype)
    bias = getattr(output, "bias", None) if output is not None else None
    if bias is not None:
        bias[new_ids] = bias[source_ids].float().mean().to(bias.dtype) if source_ids is not None else bias[:old_rows].mean()
