"""Quiet-STaR's thought delimiters: the one place their strings are written, adding them, masking them.

The paper (Zelikman et al. 2024, sec. 4.2) adds `<|startofthought|>` and `<|endofthought|>` and initialises
both embeddings from the em dash "---" (text's own way to mark a pause). Every consumer (training, the
curriculum's thinker, chat, the server) takes the strings from here or from the head file of the model it
loaded, never from a literal of its own. Their logits are masked whenever a token is chosen (thought sampling
and answers): the model is never taught not to emit them. How their embeddings train faster is the quietstar
stage's business (`stages/quietstar/embedding.py`). Exercise: `pytest tests/stages/quietstar/test_quietstar_tokens.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ....errors import ForgeError
from ...special_tokens import add_special_tokens

START_OF_THOUGHT = "<|startofthought|>"
END_OF_THOUGHT = "<|endofthought|>"


@dataclass(frozen=True)
class ThoughtTokens:
    """Ids of the two delimiters in a tokenizer."""

    start_id: int
    end_id: int

    @property
    def ids(self) -> tuple[int, int]:
        return (self.start_id, self.end_id)


def thought_tokens_of(tokenizer, start: str = START_OF_THOUGHT, end: str = END_OF_THOUGHT) -> ThoughtTokens:
    """Look the delimiters up in a tokenizer that already has them; ForgeError if it does not."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in (start, end) if t not in vocab]
    if missing:
        raise ForgeError(f"tokenizer has no thought token(s) {missing}; was this model trained by the quietstar stage?")
    return ThoughtTokens(vocab[start], vocab[end])


def add_thought_tokens(
    model, tokenizer, *, init_from: str = "---", start: str = START_OF_THOUGHT, end: str = END_OF_THOUGHT
) -> tuple[ThoughtTokens, str]:
    """Add both delimiters (if absent) as special tokens, initialised from `init_from`; return ids and how.

    A model that already has the tokens keeps its trained embeddings, so re-running the stage on its own
    output continues from them. A tokenizer that cannot spell `init_from` starts them from the mean embedding.
    """
    vocab = tokenizer.get_vocab()
    if start in vocab and end in vocab:
        return ThoughtTokens(vocab[start], vocab[end]), "existing thought tokens kept"
    try:
        add_special_tokens(model, tokenizer, [start, end], init_from=init_from)
        how = f"embedding of {init_from!r}"
    except ForgeError:
        add_special_tokens(model, tokenizer, [start, end], init_from=None)
        how = f"mean embedding ({init_from!r} is not in the vocabulary)"
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    return thought_tokens_of(tokenizer, start, end), how


def mask_thought_logits(logits: torch.Tensor, tokens: ThoughtTokens) -> torch.Tensor:
    """A copy of `logits` in which neither delimiter can be chosen."""
    masked = logits.clone()
    masked[..., list(tokens.ids)] = float("-inf")
    return masked
