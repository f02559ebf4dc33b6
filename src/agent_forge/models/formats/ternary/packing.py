"""Packing ternary weights 4 per byte (2 bits each), in two layouts.

* ``pack_rows`` / ``unpack_rows``: the layout of transformers' ``bitnet`` quantization (what its ``BitLinear``
  loads). A (N, K) matrix of codes in {-1, 0, 1} is stored as (N/4, K) uint8; stored byte ``[r, k]`` holds
  ``code + 1`` of rows ``r``, ``r + N/4``, ``r + N/2``, ``r + 3N/4`` in bit pairs 0-1, 2-3, 4-5, 6-7.
  This is the on-disk format of the packed export.
* ``pack_kernel`` / ``unpack_kernel``: the layout the CPU kernel reads. Each row is split into blocks of 128
  inputs, stored as 32 bytes; byte ``t`` of a block holds ``code + 1`` of inputs ``t``, ``32 + t``, ``64 + t``,
  ``96 + t`` in bit pairs 0-1 .. 6-7, so that one shift and mask turns 32 bytes into 32 consecutive weights.
  Rows are padded with zero weights up to a multiple of 128 inputs.

Both round trips are exact. Exercise: ``pytest tests/stages/bitnet/test_bitnet_packing.py``.
"""

from __future__ import annotations

import torch

from ....errors import ForgeError

VALUES_PER_BYTE = 4
KERNEL_BLOCK = 128


def _check_codes(codes: torch.Tensor) -> None:
    if codes.dim() != 2:
        raise ValueError(f"expected a 2-D matrix of ternary codes, got shape {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < -1 or codes.max() > 1):
        raise ValueError("ternary codes must lie in {-1, 0, 1}")


def pack_rows(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes -> (N/4, K) uint8 in transformers' bitnet layout; N must be a multiple of 4."""
    _check_codes(codes)
    rows = codes.shape[0]
    if rows % VALUES_PER_BYTE:
        raise ForgeError(f"cannot pack a layer with {rows} output rows: transformers' bitnet layout needs a multiple of 4")
    shifted = (codes.to(torch.int16) + 1).to(torch.uint8).reshape(VALUES_PER_BYTE, rows // VALUES_PER_BYTE, -1)
    packed = torch.zeros(shifted.shape[1:], dtype=torch.uint8)
    for i in range(VALUES_PER_BYTE):
        packed |= shifted[i] << (2 * i)
    return packed


def unpack_rows(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_rows``: (N/4, K) uint8 -> (N, K) int8 codes."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"expected a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    planes = [((packed >> (2 * i)) & 3) for i in range(VALUES_PER_BYTE)]
    return torch.cat(planes, dim=0).to(torch.int8) - 1


def kernel_row_bytes(in_features: int) -> int:
    """Bytes one row occupies in the kernel layout (inputs padded to a multiple of 128)."""
    return -(-in_features // KERNEL_BLOCK) * (KERNEL_BLOCK // VALUES_PER_BYTE)


def pack_kernel(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes -> (N, kernel_row_bytes(K)) uint8 in the kernel's blocked layout."""
    _check_codes(codes)
    rows, cols = codes.shape
    padded_cols = kernel_row_bytes(cols) * VALUES_PER_BYTE
    shifted = torch.ones(rows, padded_cols, dtype=torch.uint8)  # code 1 == weight 0 for the padding
    shifted[:, :cols] = (codes.to(torch.int16) + 1).to(torch.uint8)
    # (rows, blocks, plane, lane): plane p of a block holds inputs p*32 .. p*32+31
    planes = shifted.reshape(rows, -1, VALUES_PER_BYTE, KERNEL_BLOCK // VALUES_PER_BYTE)
    packed = torch.zeros(rows, planes.shape[1], KERNEL_BLOCK // VALUES_PER_BYTE, dtype=torch.uint8)
    for p in range(VALUES_PER_BYTE):
        packed |= planes[:, :, p] << (2 * p)
    return packed.reshape(rows, -1).contiguous()


def unpack_kernel(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Inverse of ``pack_kernel``: (N, row_bytes) uint8 -> (N, in_features) int8 codes."""
    rows = packed.shape[0]
    blocks = packed.reshape(rows, -1, KERNEL_BLOCK // VALUES_PER_BYTE)
    planes = torch.stack([(blocks >> (2 * p)) & 3 for p in range(VALUES_PER_BYTE)], dim=2)
    return (planes.reshape(rows, -1)[:, :in_features].to(torch.int8) - 1).contiguous()


def rows_to_kernel(packed_rows: torch.Tensor) -> torch.Tensor:
    """Re-pack a transformers-layout matrix into the kernel layout (int8 codes in between, never floats)."""
    return pack_kernel(unpack_rows(packed_rows))
