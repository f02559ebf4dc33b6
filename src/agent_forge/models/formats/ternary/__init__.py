"""BitNet b1.58 ternary weights as a model format: layers, quantizers, markers, the 2-bit export, the kernel.

* `restore_bitlinear(model, path) -> bool` right after `load_model(path)`: rebuilds the BitLinear layers of a
  saved ternary model (False and no change for other models); `load_agent` calls it for every consumer;
* `is_ternary(model)`, `keep_ternary(model)` (after adding layers, before saving), `set_quant_strength`;
* `convert_to_bitlinear` to make a model ternary (the bitnet stage adds the warm-up and distillation);
* `export_packed` / `load_packed` for the 2-bit packed export and CPU inference from it, `kernel_description`
  for which matmul path runs it, `PackedDecoder` for batch-1 decoding of a packed Llama in one C call per token.
"""

from .convert import (
    MARKER,
    bitlinear_layers,
    convert_to_bitlinear,
    convertible_linears,
    is_ternary,
    is_ternary_checkpoint,
    keep_ternary,
    restore_bitlinear,
    set_quant_strength,
)
from .decode import PackedDecoder, decoder_for
from .kernel import kernel_description
from .layer import BitLinear, frozen_ternary_weights
from .packed import PackedBitLinear, export_packed, is_packed_export, load_packed, packed_size_report, write_packed_files

__all__ = [
    "BitLinear", "MARKER", "frozen_ternary_weights", "PackedBitLinear", "PackedDecoder",
    "decoder_for", "bitlinear_layers", "convert_to_bitlinear", "convertible_linears",
    "export_packed", "is_packed_export", "is_ternary", "is_ternary_checkpoint", "keep_ternary",
    "kernel_description", "load_packed", "packed_size_report", "restore_bitlinear", "set_quant_strength",
    "write_packed_files",
]
