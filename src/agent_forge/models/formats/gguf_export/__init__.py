"""GGUF export of a forged agent for llama.cpp: `export_gguf(agent, path)` and reading such a file back.

* `ternary`: BitLinear codes in TQ2_0/TQ1_0 (Q4_0 or F16 where rows do not fit the 256-value block) with the
  exact per-tensor scale as an F32 `.scale` tensor;
* `embedding`: the embedding (and an untied head) in F32, F16 or Q8_0, and rounding it alike for the check;
* `vocab`: a byte-level BPE tokenizer as `tokenizer.ggml.*` (refuses the tiny profile's character tokenizer);
* `layout`: llama.cpp's tensor names and the q/k rope reordering;
* `export`: `export_gguf` / `write_gguf`, the refusals and the one-line notes for what llama.cpp cannot express;
* `reload`: `load_gguf_model` (what `models.load_model` uses for these files) and the logit round trip.

Exercise: ``pytest tests/models/test_gguf_export.py``; ``agent-forge export RUN --gguf OUT.gguf``.
"""

from .export import GGUFExport, export_gguf, write_gguf
from .reload import RoundTrip, is_forge_ternary_gguf, load_gguf_model, round_trip

__all__ = ["GGUFExport", "RoundTrip", "export_gguf", "is_forge_ternary_gguf", "load_gguf_model", "round_trip", "write_gguf"]
