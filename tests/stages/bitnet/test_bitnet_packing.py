"""2-bit packing: both layouts round-trip exactly, and the transformers layout matches its documented bits."""

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.models.formats.ternary.packing import (
    kernel_row_bytes,
    pack_kernel,
    pack_rows,
    rows_to_kernel,
    unpack_kernel,
    unpack_rows,
)


def _codes(rows, cols, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (rows, cols), generator=g, dtype=torch.int8)


@pytest.mark.parametrize("shape", [(4, 1), (8, 16), (64, 200), (384, 128)])
def test_row_layout_round_trip_is_exact(shape):
    codes = _codes(*shape)
    packed = pack_rows(codes)
    assert packed.dtype == torch.uint8
    assert packed.shape == (shape[0] // 4, shape[1])  # 4 weights per byte
    assert torch.equal(unpack_rows(packed), codes)


def test_row_layout_bit_positions_by_hand():
    # column 0 holds rows 0..7 = [-1, 0, 1, 1, 0, -1, 1, -1]; stored row r holds rows r, r+2, r+4, r+6
    codes = torch.tensor([[-1], [0], [1], [1], [0], [-1], [1], [-1]], dtype=torch.int8)
    packed = pack_rows(codes)
    # byte 0: rows 0, 2, 4, 6 -> codes+1 = 0, 2, 1, 2 -> 0b10_01_10_00
    # byte 1: rows 1, 3, 5, 7 -> codes+1 = 1, 2, 0, 0 -> 0b00_00_10_01
    assert packed[:, 0].tolist() == [0b10011000, 0b00001001]


def test_row_layout_needs_a_multiple_of_four_rows():
    with pytest.raises(ForgeError, match="multiple of 4"):
        pack_rows(_codes(6, 3))


def test_non_ternary_values_are_rejected():
    with pytest.raises(ValueError):
        pack_rows(torch.full((4, 4), 2, dtype=torch.int8))


@pytest.mark.parametrize("shape", [(1, 1), (3, 128), (5, 130), (7, 576), (16, 1536)])
def test_kernel_layout_round_trip_is_exact(shape):
    codes = _codes(*shape, seed=1)
    packed = pack_kernel(codes)
    assert packed.shape == (shape[0], kernel_row_bytes(shape[1]))
    assert torch.equal(unpack_kernel(packed, shape[1]), codes)


def test_kernel_layout_bit_positions_by_hand():
    codes = torch.zeros(1, 128, dtype=torch.int8)
    codes[0, 0] = 1      # plane 0, lane 0 -> bits 0-1 of byte 0
    codes[0, 33] = -1    # plane 1, lane 1 -> bits 2-3 of byte 1
    codes[0, 127] = 1    # plane 3, lane 31 -> bits 6-7 of byte 31
    packed = pack_kernel(codes)
    zero = 0b01010101    # every weight 0 is stored as 1 in each bit pair
    assert packed[0, 0].item() == (zero & ~0b11) | 0b10
    assert packed[0, 1].item() == (zero & ~0b1100) | (0b00 << 2)
    assert packed[0, 31].item() == (zero & ~0b11000000) | (0b10 << 6)
    assert all(b == zero for b in packed[0, 2:31].tolist())


def test_kernel_layout_pads_to_whole_blocks_with_zero_weights():
    codes = _codes(2, 130)
    packed = pack_kernel(codes)
    assert kernel_row_bytes(130) == 64  # two blocks of 128 inputs
    padded = unpack_kernel(packed, 256)
    assert torch.equal(padded[:, 130:], torch.zeros(2, 126, dtype=torch.int8))


def test_repacking_between_layouts_keeps_every_weight():
    codes = _codes(12, 72, seed=3)
    assert torch.equal(unpack_kernel(rows_to_kernel(pack_rows(codes)), 72), codes)
