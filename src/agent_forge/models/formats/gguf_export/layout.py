"""Where a llama-family transformers model's tensors go in a GGUF for llama.cpp's `llama` architecture.

Names: `model.layers.N.self_attn.q_proj` -> `blk.N.attn_q`, ... (`LAYER_NAMES`). Layout: GGUF keeps the
(out, in) row-major matrix of torch (its dims are listed innermost first, which `gguf.GGUFWriter` handles).

Rotary embeddings: transformers rotates the two halves of each head (`rotate_half`: dims i and i + d/2),
llama.cpp's llama rope rotates neighbouring pairs (2i, 2i + 1). The rows of q and k (weights and biases) are
therefore reordered per head so that row i of the first half and row i of the second half become neighbours
(`to_ggml_rope_order`, the same reordering llama.cpp's own converter applies); `from_ggml_rope_order` undoes it
when reading back. A row permutation keeps ternary codes ternary and the per-tensor scale unchanged.

Exercise: ``pytest tests/models/test_gguf_export.py``.
"""

from __future__ import annotations

import numpy as np

# transformers module path inside a decoder layer -> GGUF tensor base name inside `blk.N.`
LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
LAYER_NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
GLOBAL_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
ROPE_PERMUTED = {"attn_q": "num_attention_heads", "attn_k": "num_key_value_heads"}


def to_ggml_rope_order(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows (first axis) of a q/k weight or bias from transformers' half split to neighbour pairs."""
    head_dim = rows.shape[0] // n_head
    return rows.reshape(n_head, 2, head_dim // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def from_ggml_rope_order(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `to_ggml_rope_order`."""
    head_dim = rows.shape[0] // n_head
    return rows.reshape(n_head, head_dim // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def rope_theta(config) -> float:
    """The rotary base, wherever this transformers version keeps it."""
    params = getattr(config, "rope_parameters", None) or {}
    value = params.get("rope_theta") if isinstance(params, dict) else None
    return float(value if value is not None else getattr(config, "rope_theta", 10000.0))


def rope_scaling_type(config) -> str:
    """'default' for plain rotary embeddings; the scaling type (llama3, yarn, ...) otherwise."""
    for holder in (getattr(config, "rope_parameters", None), getattr(config, "rope_scaling", None)):
        if isinstance(holder, dict):
            kind = holder.get("rope_type") or holder.get("type")
            if kind and kind != "default":
                return str(kind)
    return "default"


def head_dim(config) -> int:
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else config.hidden_size // config.num_attention_heads
