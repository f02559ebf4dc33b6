"""How the embedding (and an untied LM head) is stored: F32 (exact, the default), F16 or Q8_0.

The embedding is most of a small ternary model's file (SmolLM2: 49152 x 576 values, 113 MiB in F32 against
52 MiB for all its ternary layers), so `--embedding-type q8_0` (8.5 bits per value, per-32-block fp16
scales, llama.cpp's usual choice) or `f16` trade exactness for size. The round trip then compares against the
agent with its embedding rounded the same way in memory (`rounded_embeddings`): the file must reproduce what it
claims to store; the rounding itself is reported as the difference to the agent as it is.

Exercise: ``pytest tests/models/test_gguf_export.py -k embedding``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from ....errors import ForgeError
from .ternary import block_size, decode

EMBEDDING_TYPES = {"F32": GGMLQuantizationType.F32, "F16": GGMLQuantizationType.F16, "Q8_0": GGMLQuantizationType.Q8_0}


def embedding_type(name: str) -> GGMLQuantizationType:
    found = EMBEDDING_TYPES.get(name.upper())
    if found is None:
        raise ForgeError(f"embedding type must be one of {', '.join(t.lower() for t in EMBEDDING_TYPES)}, got {name!r}")
    return found


def usable_type(qtype: GGMLQuantizationType, width: int) -> GGMLQuantizationType:
    """`qtype`, or F16 when rows of `width` values do not fill its blocks."""
    if qtype == GGMLQuantizationType.Q8_0 and width % block_size(qtype):
        return GGMLQuantizationType.F16
    return qtype


def encode_matrix(array: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """A float matrix as `qtype` tensor data."""
    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == GGMLQuantizationType.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


def _matrices(model) -> list[torch.nn.Parameter]:
    """The embedding and, when it is a separate tensor, the LM head (what `--embedding-type` applies to)."""
    found = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and isinstance(getattr(head, "weight", None), torch.nn.Parameter) and head.weight is not found[0] \
            and type(head) is torch.nn.Linear:
        found.append(head.weight)
    return found


@contextmanager
def rounded_embeddings(model, types: list[GGMLQuantizationType]):
    """Within the block, the embedding (and untied head) hold their values as stored in `types` (one per matrix)."""
    saved = []
    try:
        with torch.no_grad():
            for weight, qtype in zip(_matrices(model), types):
                if qtype == GGMLQuantizationType.F32:
                    continue
                saved.append((weight, weight.detach().clone()))
                values = decode(encode_matrix(weight.detach().float().cpu().numpy(), qtype), qtype)
                weight.copy_(torch.from_numpy(values).to(weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)
