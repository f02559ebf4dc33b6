"""Quiet-STaR thoughts as a model format: the delimiter tokens and the mixing head stored beside the model.

A thinking model is an ordinary HF folder (delimiters in its vocabulary, listed in the generation config's
`suppress_tokens`) plus `quietstar_head.safetensors`, whose metadata records the head's shape, the thought
length and the delimiter strings.
"""

from .checkpoint import HEAD_FILE, HeadInfo, has_head, load_head, save_head
from .mixing import MixingHead
from .tokens import END_OF_THOUGHT, START_OF_THOUGHT, ThoughtTokens, add_thought_tokens, mask_thought_logits, thought_tokens_of

__all__ = [
    "END_OF_THOUGHT", "HEAD_FILE", "HeadInfo", "MixingHead", "START_OF_THOUGHT", "ThoughtTokens",
    "add_thought_tokens", "has_head", "load_head", "mask_thought_logits", "save_head", "thought_tokens_of",
]
