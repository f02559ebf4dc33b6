"""Ternary weights in GGUF: codes in {-1, 0, 1} in a GGML block type, and the exact scale beside them.

A BitLinear weight is ``codes * gamma`` with one fp32 ``gamma`` (absmean) per matrix. GGUF's ternary types
(TQ2_0: 2.06 bits/weight, TQ1_0: 1.69) store blocks of 256 values with one fp16 scale ``d`` each, so they
could hold ``gamma`` only rounded to fp16 (a relative error up to 2^-12). Instead every block gets ``d = 1``
(exact in fp16) and ``gamma`` is written as its own F32 tensor ``<name>.scale`` of shape (1,), which llama.cpp
multiplies into the matmul result for every architecture (its loader's generic per-tensor scale pass); the
dequantized weight is then exactly ``codes * gamma``.

Blocks of 256 need rows (``in_features``) that are a multiple of 256. SmolLM2's hidden size is 576, so most
of its layers cannot be TQ2_0: they fall back to Q4_0 (blocks of 32, 4.5 bits/weight) with ``d = 1`` and
nibbles ``code + 8``, still exact; rows not a multiple of 32 fall back to F16 codes (exact, 16 bits/weight).
gguf's own Q4_0 quantizer picks ``d`` from the block maximum and cannot represent -1 and 1 together, so the
Q4_0 blocks are assembled here.

Exercise: ``pytest tests/models/test_gguf_export.py -k ternary``.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

from ....errors import ForgeError

TERNARY_TYPES = {"TQ2_0": GGMLQuantizationType.TQ2_0, "TQ1_0": GGMLQuantizationType.TQ1_0}
FALLBACK_BITS = {GGMLQuantizationType.Q4_0: 4.5, GGMLQuantizationType.F16: 16.0}


def ternary_type(name: str) -> GGMLQuantizationType:
    """The GGML type for a ternary type name (TQ2_0 or TQ1_0, case-insensitive); ForgeError otherwise."""
    found = TERNARY_TYPES.get(name.upper())
    if found is None:
        raise ForgeError(f"ternary type must be one of {', '.join(TERNARY_TYPES)}, got {name!r}")
    return found


def block_size(qtype: GGMLQuantizationType) -> int:
    return GGML_QUANT_SIZES[qtype][0]


def bits_per_weight(qtype: GGMLQuantizationType) -> float:
    block, size = GGML_QUANT_SIZES[qtype]
    return 8.0 * size / block


def choose_type(in_features: int, preferred: GGMLQuantizationType) -> GGMLQuantizationType:
    """The most compact exact type whose block fits a row of `in_features` codes."""
    for qtype in (preferred, GGMLQuantizationType.Q4_0):
        if in_features % block_size(qtype) == 0:
            return qtype
    return GGMLQuantizationType.F16


def _q4_0_unit_blocks(codes: np.ndarray) -> np.ndarray:
    """Q4_0 blocks with d = 1: per 32 values, fp16 d then 16 bytes (value j in the low nibble of byte j,
    value j + 16 in the high nibble), each nibble holding ``code + 8``."""
    rows, cols = codes.shape
    nibbles = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(rows, cols // 32, 2, 16)
    packed = nibbles[:, :, 0, :] | (nibbles[:, :, 1, :] << np.uint8(4))
    d = np.full((rows, cols // 32, 1), 1.0, dtype=np.float16).view(np.uint8)
    return np.concatenate([d, packed], axis=-1).reshape(rows, -1)


def encode_codes(codes: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """(out, in) int8 codes as `qtype` data (uint8 blocks, or fp16 values), dequantizing to exactly the codes."""
    if codes.ndim != 2 or (codes.size and (codes.min() < -1 or codes.max() > 1)):
        raise ValueError("expected a 2-D matrix of ternary codes in {-1, 0, 1}")
    if qtype == GGMLQuantizationType.F16:
        data = codes.astype(np.float16)
    elif qtype == GGMLQuantizationType.Q4_0:
        data = _q4_0_unit_blocks(codes)
    else:
        # gguf's TQ quantizers scale each block by its absolute maximum: 1 for ternary codes (0 for an all-zero
        # block, which decodes to zeros), so d = 1 and the codes come back unchanged
        data = quantize(codes.astype(np.float32), qtype)
    back = decode(data, qtype)
    if not np.array_equal(back, codes.astype(np.float32)):  # never expected; refuse rather than ship wrong weights
        raise ForgeError(f"{qtype.name} does not reproduce the ternary codes exactly; not writing it")
    return data


def decode(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """GGUF tensor data of type `qtype` as fp32 values (numpy layout: (out, in))."""
    if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return np.asarray(data, dtype=np.float32)
    return dequantize(np.asarray(data), qtype).astype(np.float32, copy=False)
