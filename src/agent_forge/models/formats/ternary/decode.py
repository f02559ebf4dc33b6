"""Whole-step decoding of a packed ternary Llama in the C kernel: one ctypes call per token.

Layer by layer, a packed SmolLM2-135M spends most of a decode step outside the ternary matmuls: the fp32 LM
head (49152 x 576 floats, 113 MB read per token) and some 40 torch/Python dispatches per layer. ``PackedDecoder``
takes a model loaded by ``load_packed`` (or ``load_agent`` on a packed export) and runs the whole step in
``tl_decode_step`` (see ``kernel/ternary_linear.c``): RMSNorm, q/k/v (input quantized once), RoPE from the
model's own rotary tables, attention over a KV cache kept here, o, the SiLU MLP (gate/up quantized once), the
final norm and the LM head, in one OpenMP region of ``torch.get_num_threads()`` threads.

The LM head reads int8 rows (per-row absmax scale, built here at construction from the fp32 head, which stays
for rescoring) and keeps greedy decoding exact: every row whose int8 logit could, within a rigorous bound on
the quantization error, reach the best lower bound is recomputed from the fp32 weights, and the argmax is taken
among those. Rows that cannot win keep their int8 estimate, so sampling sees logits within that bound of fp32.

Supported: ``model_type == "llama"`` with every q/k/v/o/gate/up/down a ``PackedBitLinear`` (with or without
sub-norms and biases), SiLU, one sequence. ``PackedDecoder.unsupported(model)`` says why a model is not.
``agent_forge.models.generation`` decodes a single greedy prompt through ``decoder_for(model)`` (one cached
decoder per model; batches and sampling stay on the layer-by-layer path); ``greedy`` is the batch-1 entry point
and what ``benchmarks/bench_packed_decode.py`` times.

Exercise: ``pytest tests/stages/bitnet/test_packed_decoder.py``; ``python benchmarks/bench_packed_decode.py``.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Sequence

import torch

from .kernel import VARIANTS, _LayerArgs, default_variant, kernel_library
from .packed import PackedBitLinear

_PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj")


class _Block(ctypes.Structure):
    """Mirror of ``tl_block``."""

    _fields_ = [("proj", _LayerArgs * 7), ("sub_norm", ctypes.c_void_p * 7), ("attn_norm", ctypes.c_void_p),
                ("mlp_norm", ctypes.c_void_p), ("lr_a", ctypes.c_void_p * 7), ("lr_b", ctypes.c_void_p * 7),
                ("lr_scale", ctypes.c_void_p * 7), ("lr_rank", ctypes.c_int64 * 7)]


class _Model(ctypes.Structure):
    """Mirror of ``tl_model``."""

    _fields_ = [
        ("hidden", ctypes.c_int64), ("inter", ctypes.c_int64), ("n_layers", ctypes.c_int64),
        ("n_heads", ctypes.c_int64), ("n_kv", ctypes.c_int64), ("head_dim", ctypes.c_int64),
        ("vocab", ctypes.c_int64), ("capacity", ctypes.c_int64),
        ("eps", ctypes.c_float), ("sub_eps", ctypes.c_float), ("attn_scale", ctypes.c_float),
        ("head_mode", ctypes.c_int32),
        ("embed", ctypes.c_void_p), ("final_norm", ctypes.c_void_p), ("head_w", ctypes.c_void_p),
        ("head_bias", ctypes.c_void_p), ("head_q", ctypes.c_void_p), ("head_scale", ctypes.c_void_p),
        ("head_l1", ctypes.c_void_p), ("head_row", ctypes.c_int64), ("cos", ctypes.c_void_p),
        ("sin", ctypes.c_void_p), ("k_cache", ctypes.c_void_p), ("v_cache", ctypes.c_void_p),
        ("blocks", ctypes.c_void_p), ("work", ctypes.c_void_p), ("rescored", ctypes.c_int64),
        ("lr_max_rank", ctypes.c_int64),
    ]


CORRECTION = "low_rank_correction"  # attribute of a PackedBitLinear holding an expert's (A, B) factors
INT8_CORRECTIONS_ABOVE = 8 * 2**20  # weight bytes per token above which expert corrections are stored in int8


def _altered(model) -> str | None:
    """A module whose forward is hooked or replaced: the C step would silently compute without it, so such a
    model is refused. The one replacement it runs itself: a packed projection's low-rank expert correction
    (``experts.lowrank.corrected`` sets ``CORRECTION`` beside the replaced forward)."""
    for name, module in model.named_modules():
        replaced = "forward" in vars(module) and not (
            isinstance(module, PackedBitLinear) and getattr(module, CORRECTION, None) is not None
            and _is_projection(name))
        if module._forward_hooks or module._forward_pre_hooks or replaced:
            return f"module {name or '(root)'} has a forward hook or a replaced forward (the C step would skip it)"
    return None


def _is_projection(name: str) -> bool:
    return any(name.endswith("." + p) for p in _PROJ)


def _threads() -> int:
    """The thread count to decode with: torch's setting, as for every other op (the C side caps it at 256)."""
    return max(1, min(256, torch.get_num_threads()))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def quantize_head(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp32 (V, H) -> (int8 rows zero-padded to a multiple of 32, per-row scale absmax/127, per-row L1 of the
    dequantized row); the scale and the L1 norm feed the C side's error bound."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = (w / scale[:, None]).round().clamp(-127, 127)
    row = -(-w.shape[1] // 32) * 32
    q = torch.zeros(w.shape[0], row, dtype=torch.int8)
    q[:, : w.shape[1]] = codes.to(torch.int8)
    l1 = (codes * scale[:, None]).abs().sum(dim=1)
    return q.contiguous(), scale.contiguous(), l1.contiguous()


class PackedDecoder:
    """Batch-1 decoding of a packed Llama in C: ``feed(ids)`` appends tokens, ``greedy(...)`` generates.

    ``variant`` picks the ternary matmul (``kernel.VARIANTS``); ``int8_head=False`` keeps the LM head in fp32
    (slower; the same greedy tokens). The KV cache grows by doubling; ``reset()`` starts a new sequence.
    """

    def __init__(self, model, *, variant: str | None = None, int8_head: bool = True, capacity: int = 256) -> None:
        reason = self.unsupported(model)
        if reason:
            raise ValueError(f"PackedDecoder cannot run this model: {reason}")
        self.lib = kernel_library()
        self.variant = variant or default_variant()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown ternary kernel variant {self.variant!r}; expected one of {sorted(VARIANTS)}")
        cfg = model.config
        inner = model.model
        # weakly: the decoder is cached per model (``decoder_for``) and must not keep its model alive
        self._model = weakref.ref(model)
        self.n_layers = cfg.num_hidden_layers
        self.hidden = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.n_heads
        self.vocab = model.lm_head.out_features
        self.max_positions = getattr(cfg, "max_position_embeddings", None)
        self._keep: list = []  # every tensor the C structs point into
        blocks = (_Block * self.n_layers)()
        self._sub_eps = 1e-6
        for i, layer in enumerate(inner.layers):
            b = blocks[i]
            for p, name in enumerate(_PROJ):
                mod: PackedBitLinear = layer.get_submodule(name)
                mm = mod.matmul
                lut = None
                if self.variant == "lut":
                    lut = torch.empty(-(-mm.out_features // 32) * 32, mm.packed.shape[1], dtype=torch.uint8)
                    self.lib.tl_kernel_to_lut(mm.packed.data_ptr(), mm.out_features, mm.packed.shape[1], lut.data_ptr())
                    self._keep.append(lut)
                b.proj[p] = _LayerArgs(mm.packed.data_ptr(), _ptr(mm.bias), mm.in_features, mm.out_features,
                                       mm.packed.shape[1], mm.gamma, mm.act_bits, VARIANTS[self.variant], _ptr(lut))
                if mod.rms_norm is not None:
                    w = mod.rms_norm.weight.detach().float().contiguous()
                    self._keep.append(w)
                    b.sub_norm[p] = w.data_ptr()
                    self._sub_eps = float(mod.rms_norm.eps if mod.rms_norm.eps is not None else torch.finfo(torch.float32).eps)
            for attr, norm in (("attn_norm", layer.input_layernorm), ("mlp_norm", layer.post_attention_layernorm)):
                w = norm.weight.detach().float().contiguous()
                self._keep.append(w)
                setattr(b, attr, w.data_ptr())
        self._blocks = blocks
        self._synced = None  # (int8 mode, the factors every projection held) at the last _sync_corrections
        self.embed = inner.embed_tokens.weight.detach().float().contiguous()
        self.final_norm = inner.norm.weight.detach().float().contiguous()
        self.head_w = model.lm_head.weight.detach().float().contiguous()
        self.head_bias = None if model.lm_head.bias is None else model.lm_head.bias.detach().float().contiguous()
        self.int8_head = int8_head
        if int8_head:
            self.head_q, self.head_scale, self.head_l1 = quantize_head(self.head_w)
        else:
            self.head_q = self.head_scale = self.head_l1 = None
        # expert corrections in int8 where decoding is memory-bound (the packed rows do not fit in a core's
        # caches: fp32 rank-16 factors would add a fifth of the bytes read per token); in fp32 where it is
        # compute-bound (a small model: the int8-to-float conversions cost more than the bytes they save)
        self.int8_corrections = self.weight_bytes_per_token() > INT8_CORRECTIONS_ABOVE
        eps = getattr(inner.norm, "variance_epsilon", None) or getattr(cfg, "rms_norm_eps", 1e-6)
        self._m = _Model(
            hidden=self.hidden, inter=cfg.intermediate_size, n_layers=self.n_layers, n_heads=self.n_heads,
            n_kv=self.n_kv, head_dim=self.head_dim, vocab=self.vocab, capacity=0, eps=float(eps),
            sub_eps=self._sub_eps, attn_scale=float(self.head_dim ** -0.5), head_mode=1 if int8_head else 0,
            embed=self.embed.data_ptr(), final_norm=self.final_norm.data_ptr(), head_w=self.head_w.data_ptr(),
            head_bias=_ptr(self.head_bias), head_q=_ptr(self.head_q), head_scale=_ptr(self.head_scale),
            head_l1=_ptr(self.head_l1), head_row=self.head_q.shape[1] if int8_head else 32 * -(-self.hidden // 32),
            blocks=ctypes.addressof(blocks),
        )
        self.logits = torch.empty(self.vocab)
        self.position = 0
        self.rescored = 0  # rows the last step recomputed in fp32 (int8 head)
        self._grow(capacity)

    @property
    def model(self):
        model = self._model()
        if model is None:
            raise ValueError("PackedDecoder: its model no longer exists")
        return model

    @staticmethod
    def unsupported(model) -> str | None:
        """Why ``PackedDecoder`` cannot run ``model`` (None when it can)."""
        if kernel_library() is None:
            return "the C kernel is unavailable (torch fallback in use)"
        cfg = getattr(model, "config", None)
        if getattr(cfg, "model_type", None) != "llama":
            return f"model_type {getattr(cfg, 'model_type', None)!r} (only llama)"
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "pretraining_tp", 1) != 1:
            return "only SiLU MLPs without tensor-parallel slicing"
        layers = getattr(getattr(model, "model", None), "layers", None)
        if layers is None or getattr(model, "lm_head", None) is None:
            return "not a LlamaForCausalLM"
        for i, layer in enumerate(layers):
            for name in _PROJ:
                if not isinstance(layer.get_submodule(name), PackedBitLinear):
                    return f"layer {i} {name} is not a PackedBitLinear"
        return _altered(model)

    def _grow(self, capacity: int) -> None:
        """KV cache, rotary tables and workspace for `capacity` positions (copying the cached ones)."""
        if self.max_positions:
            capacity = min(capacity, self.max_positions)
        kvd = self.n_kv * self.head_dim
        k = torch.zeros(self.n_layers, capacity, kvd)
        v = torch.zeros(self.n_layers, capacity, kvd)
        if self.position:
            k[:, : self.position] = self.k_cache[:, : self.position]
            v[:, : self.position] = self.v_cache[:, : self.position]
        self.k_cache, self.v_cache = k, v
        # the model's own rotary module: every rope variant transformers implements, in its numbers
        rotary = self.model.model.rotary_emb
        with torch.no_grad():
            cos, sin = rotary(torch.zeros(1, dtype=torch.float32), torch.arange(capacity)[None])
        self.cos, self.sin = cos[0].float().contiguous(), sin[0].float().contiguous()
        self._m.capacity = capacity
        self._m.cos, self._m.sin = self.cos.data_ptr(), self.sin.data_ptr()
        self._m.k_cache, self._m.v_cache = self.k_cache.data_ptr(), self.v_cache.data_ptr()
        self.capacity = capacity
        self._workspace(max(getattr(self, "_threads", 1), _threads()))

    def _workspace(self, threads: int) -> None:
        """Scratch memory for `threads` threads (each keeps a private copy of the residual stream)."""
        size = self.lib.tl_model_workspace_bytes(ctypes.byref(self._m), threads)
        self.work = torch.empty(size + 64, dtype=torch.uint8)
        self._m.work = (self.work.data_ptr() + 63) // 64 * 64
        self._threads = threads

    def reset(self) -> None:
        """Start a new sequence (the cache's memory is kept)."""
        self.position = 0

    def step(self, token: int) -> int:
        """Feed one token; returns the greedy next token (``self.logits`` holds the logits)."""
        if self.position >= self.capacity:
            if self.max_positions and self.position >= self.max_positions:
                raise ValueError(f"sequence longer than max_position_embeddings ({self.max_positions})")
            self._grow(2 * self.capacity)
        if not 0 <= token < self.vocab:
            raise ValueError(f"token id {token} outside the vocabulary of {self.vocab}")
        threads = _threads()
        if threads > self._threads:
            self._workspace(threads)
        nxt = self.lib.tl_decode_step(self._ref, token, self.position, self.logits.data_ptr(), threads)
        self.position += 1
        self.rescored = self._m.rescored
        return nxt

    @property
    def _ref(self):
        return ctypes.byref(self._m)

    def feed(self, ids: Sequence[int]) -> int:
        """Feed several tokens (e.g. a prompt); returns the greedy token after the last one.

        Checks first that no forward hook or replaced forward was added to the model since construction
        (``step`` alone does not: it is the per-token fast path)."""
        altered = _altered(self.model)
        if altered:
            raise ValueError(f"PackedDecoder cannot run this model now: {altered}")
        self._sync_corrections()
        nxt = -1
        for t in ids:
            nxt = self.step(int(t))
        return nxt

    def greedy(self, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        """Greedy continuation of `prompt_ids` (a fresh sequence); stops after a token in `stop_ids`."""
        if not prompt_ids:
            raise ValueError("greedy decoding needs at least one prompt token")
        self.reset()
        if self.capacity < len(prompt_ids) + max_new_tokens:
            self._grow(len(prompt_ids) + max_new_tokens)
        out: list[int] = []
        nxt = self.feed(prompt_ids)
        stops = set(stop_ids)
        while len(out) < max_new_tokens:
            out.append(nxt)
            if nxt in stops or len(out) == max_new_tokens:
                break
            nxt = self.step(nxt)
        return out

    def _sync_corrections(self) -> None:
        """Point each projection at the expert correction its layer holds now (``CORRECTION``), or at none.

        Skipped when every layer holds the same factors as at the last sync (the same objects, kept alive in
        ``_synced`` so their identity cannot be reused), so repeated prompts under one expert convert them once."""
        layers = self.model.model.layers
        current = [getattr(layer.get_submodule(name), CORRECTION, None) for layer in layers for name in _PROJ]
        key = (self.int8_corrections, current)
        synced = self._synced
        if synced is not None and synced[0] == key[0] and all(x is y for x, y in zip(synced[1], current)):
            return
        held, top = [], 0
        for i, layer in enumerate(layers):
            b = self._blocks[i]
            for p, name in enumerate(_PROJ):
                factors = current[i * len(_PROJ) + p]
                if factors is None:
                    b.lr_a[p], b.lr_b[p], b.lr_scale[p], b.lr_rank[p] = None, None, None, 0
                    continue
                a, bf = (t.detach().float() for t in factors)
                mm = b.proj[p]
                if a.dim() != 2 or bf.dim() != 2 or a.shape != (mm.in_features, bf.shape[0]) or bf.shape[1] != mm.out_features:
                    raise ValueError(f"layer {i} {name}: correction factors {tuple(a.shape)} x {tuple(bf.shape)} do "
                                     f"not fit a {mm.in_features} -> {mm.out_features} projection")
                if self.int8_corrections:
                    a, bf, scale = int8_factors(a, bf)
                else:
                    pad = -a.shape[1] % 8  # zero directions up to the kernel's vector width: the same sums
                    a = torch.nn.functional.pad(a, (0, pad)).contiguous()
                    bf, scale = torch.nn.functional.pad(bf, (0, 0, 0, pad)).contiguous(), None
                held += [a, bf, scale]
                b.lr_a[p], b.lr_b[p], b.lr_scale[p], b.lr_rank[p] = a.data_ptr(), bf.data_ptr(), _ptr(scale), a.shape[1]
                top = max(top, a.shape[1])
        self._held = held  # the factors the C structs point into, until the next sync
        self._synced = key
        if top > self._m.lr_max_rank:
            self._m.lr_max_rank = top
            self._workspace(self._threads)

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decode step reads: packed ternary rows, norms, the head (int8 or fp32), one
        embedding row; the fp32 rows rescored are counted by the caller from ``rescored`` if wanted."""
        total = 0
        for b in self._blocks:
            for p in range(7):
                total += b.proj[p].out_features * b.proj[p].row_bytes
        total += 2 * self.n_layers * self.hidden * 4 + self.hidden * 4 * 2
        if self.int8_head:
            total += self.head_q.numel() + 2 * self.head_scale.numel() * 4
        else:
            total += self.head_w.numel() * 4
        return total


def int8_factors(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A codes, B codes, scale) of a correction x -> (x @ A) @ B for the C step: A (in, r) int8 per column and
    B (r, out) int8 per row (absmax / 127), r padded with zero directions to a multiple of 8 (the kernel's vector
    width), scale[c] = column c's scale times row c's. Each code is within half a step of its value, so the
    correction is within ~0.4% of each factor's largest entry of the fp32 one."""
    pad = -a.shape[1] % 8
    a = torch.nn.functional.pad(a.float(), (0, pad))
    b = torch.nn.functional.pad(b.float(), (0, 0, 0, pad))
    sa = a.abs().amax(0).clamp_min(1e-30) / 127
    sb = b.abs().amax(1).clamp_min(1e-30) / 127
    a8 = torch.round(a / sa).clamp(-127, 127).to(torch.int8).contiguous()
    b8 = torch.round(b / sb[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    return a8, b8, (sa * sb).contiguous()


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def decoder_for(model, *, int8_head: bool = True) -> PackedDecoder | None:
    """The cached ``PackedDecoder`` of `model`, or None when the C step cannot run it as it is now (not packed, no
    compiler, a hook or replaced forward added since, e.g. an expert applied for one prompt).

    Cached per model and head mode (building one quantizes the LM head); the packed weights of a loaded model
    never change, so a cached decoder stays valid for its model's lifetime."""
    try:
        cached = _DECODERS.get(model)
    except TypeError:  # not weak-referenceable: not a module
        return None
    if cached is not None and int8_head in cached:
        return cached[int8_head] if _altered(model) is None else None
    # cheap test first: most models are not packed, and `unsupported` would build the C kernel to say so
    if not any(isinstance(m, PackedBitLinear) for m in model.modules()) or PackedDecoder.unsupported(model):
        return None
    decoder = PackedDecoder(model, int8_head=int8_head)
    _DECODERS.setdefault(model, {})[int8_head] = decoder
    return decoder


__all__ = ["PackedDecoder", "decoder_for", "quantize_head"]
