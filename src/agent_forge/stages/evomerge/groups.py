"""Which layer group a tensor belongs to, so that a recipe can give each group its own merge parameters.

A decoder-only model's state dict splits into the embeddings, one entry per transformer block
(`model.layers.<i>.`), and the head (final norm, `lm_head`). Groups are numbered embeddings = 0, blocks
1..G-2 (each spanning `layers_per_group` consecutive blocks), head = G-1. With `split_modules`, each block
group is split in two: its attention half (the attention projections and the norm before them) and its MLP half
(the MLP and the norm before it), since skills can live in one half of a layer and not the other. Exercise:
`python -m pytest tests/stages/evomerge/test_groups.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ForgeError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBED_MARKERS = ("embed_tokens", "wte", "word_embeddings")
# checked before anything else: `post_attention_layernorm` feeds the MLP although its name says "attention"
_MLP_MARKERS = ("mlp", "post_attention_layernorm", "ln_2", "feed_forward", "ffn")


def layer_index(name: str) -> int | None:
    """The transformer-block index in a parameter name, or None for embeddings/head tensors."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class LayerGrouping:
    """Maps tensor names to parameter groups: embeddings, blocks of `layers_per_group` layers, head."""

    num_layers: int
    layers_per_group: int = 1
    split_modules: bool = False

    def __post_init__(self):
        if self.num_layers < 1:
            raise ForgeError(f"a model needs at least one layer to be merged, got {self.num_layers}")
        if self.layers_per_group < 1:
            raise ForgeError(f"evomerge.layers_per_group must be >= 1, got {self.layers_per_group}")

    @property
    def num_block_groups(self) -> int:
        return -(-self.num_layers // self.layers_per_group)

    @property
    def num_groups(self) -> int:
        return 2 + self.num_block_groups * (2 if self.split_modules else 1)

    def group_of(self, name: str) -> int:
        index = layer_index(name)
        if index is not None:
            if index >= self.num_layers:
                raise ForgeError(f"tensor {name} names layer {index} but the model has {self.num_layers} layers")
            block = index // self.layers_per_group
            if not self.split_modules:
                return 1 + block
            suffix = name.split(f"layers.{index}.", 1)[1]
            return 1 + 2 * block + (1 if any(m in suffix for m in _MLP_MARKERS) else 0)
        if any(marker in name for marker in _EMBED_MARKERS):
            return 0
        return self.num_groups - 1

    def labels(self) -> list[str]:
        """Human-readable group names, for metrics and plots."""
        blocks = []
        for g in range(self.num_block_groups):
            first = g * self.layers_per_group
            last = min(self.num_layers, first + self.layers_per_group) - 1
            name = f"layer{first}" if first == last else f"layers{first}-{last}"
            blocks.extend([f"{name}.attn", f"{name}.mlp"] if self.split_modules else [name])
        return ["embed", *blocks, "head"]
