"""Build a new model of the same family from a path of layers taken from several source models.

Both layer-space merges reduce to this: Frankenmerge (slices of layers) and DFS (a path through layer slots
with a scale on the hidden state entering each layer). The result is an ordinary state dict plus a config
whose `num_hidden_layers` (and per-layer lists such as `layer_types`) match the new depth, so it saves and
loads as a plain model of the source family.

Scales are folded into the weights, which keeps the stored model a plain transformers architecture. For a
pre-norm residual block `y = x + A(norm(x)); out = y + M(norm(y))`, RMSNorm ignores a positive scale on its
input, so `block(c * z) = c * block'(z)` where block' has its attention output projection (`o_proj`) and MLP
output projection (`down_proj`) divided by c. Carrying the cumulative product of scales along the path, layer k
of the stored model has both projections divided by `P_k = s_1 * ... * s_k`; the final norm removes the last
`P`. The fold is exact up to RMSNorm's epsilon: layer k effectively uses eps / P_k^2, a relative change of
order eps / mean-square(hidden state) (1e-6 / 1 for a trained model; the tests also check it is exact to float
rounding with eps -> 0). Exercise:
`python -m pytest tests/stages/evomerge/test_layerspace.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ...errors import ForgeError
from .groups import layer_index

StateDict = Mapping[str, torch.Tensor]

# Families whose decoder blocks are pre-norm residual blocks with RMSNorm and these output projections, for
# which folding a scale into the weights is exact (see the module docstring).
FOLDABLE_FAMILIES = {"llama", "mistral", "qwen2", "qwen3", "smollm3"}
OUTPUT_PROJECTIONS = ("self_attn.o_proj.", "mlp.down_proj.")


@dataclass(frozen=True)
class LayerRef:
    """Layer `layer` of source model `source`, entered with the hidden state multiplied by `scale`."""

    source: int
    layer: int
    scale: float = 1.0


def num_layers_of(sd: StateDict) -> int:
    indices = [i for i in (layer_index(k) for k in sd) if i is not None]
    return max(indices) + 1 if indices else 0


def _layer_prefix(sd: StateDict) -> str:
    for key in sd:
        index = layer_index(key)
        if index is not None:
            return key[: key.index(f"layers.{index}.")] + "layers."
    raise ForgeError("the model has no `layers.<i>.` tensors; layer-space merges need a decoder-only transformer")


def stack_layers(
    primary: StateDict,
    primary_config,
    sources: Sequence[StateDict],
    path: Sequence[LayerRef],
) -> tuple[dict[str, torch.Tensor], object]:
    """State dict and config of a model with `primary`'s embeddings and head and the layers named by `path`."""
    if not path:
        raise ForgeError("a layer path must contain at least one layer")
    prefix = _layer_prefix(primary)
    depths = [num_layers_of(sd) for sd in sources]
    scaled = any(ref.scale != 1.0 for ref in path)
    family = getattr(primary_config, "model_type", "?")
    if scaled and family not in FOLDABLE_FAMILIES:
        raise ForgeError(f"DFS scales can be folded exactly only for {sorted(FOLDABLE_FAMILIES)}, not {family!r}")
    out: dict[str, torch.Tensor] = {k: v for k, v in primary.items() if layer_index(k) is None}
    cumulative = 1.0
    for position, ref in enumerate(path):
        if not 0 <= ref.source < len(sources):
            raise ForgeError(f"layer path names source {ref.source} but only {len(sources)} models are available")
        if not 0 <= ref.layer < depths[ref.source]:
            raise ForgeError(f"layer path names layer {ref.layer} of source {ref.source}, which has {depths[ref.source]}")
        if not ref.scale > 0:
            raise ForgeError(f"DFS scales must be positive (RMSNorm cannot absorb a sign), got {ref.scale}")
        cumulative *= ref.scale
        src_prefix = f"{prefix}{ref.layer}."
        for key, tensor in sources[ref.source].items():
            if not key.startswith(src_prefix):
                continue
            suffix = key[len(src_prefix):]
            new = tensor
            if cumulative != 1.0 and suffix.startswith(OUTPUT_PROJECTIONS):
                new = tensor / cumulative
            # unscaled tensors alias the source; instantiate() copies them into the new model's parameters
            out[f"{prefix}{position}.{suffix}"] = new
    if scaled:
        for position in range(len(path)):
            for projection in OUTPUT_PROJECTIONS:
                if f"{prefix}{position}.{projection}weight" not in out:
                    raise ForgeError(f"cannot fold a DFS scale: layer {position} has no {projection}weight")
    config = copy.deepcopy(primary_config)
    config.num_hidden_layers = len(path)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and layer_types:
        config.layer_types = [layer_types[min(ref.layer, len(layer_types) - 1)] for ref in path]
    return out, config


def instantiate(config, state_dict: StateDict) -> torch.nn.Module:
    """A fresh causal LM of `config`'s family holding exactly `state_dict` (strict: nothing missing or extra)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ForgeError(f"merged weights do not fit the {config.model_type} architecture "
                         f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model.eval()
