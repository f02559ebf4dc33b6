"""`export_gguf(agent, path)`: the agent as one GGUF file for llama.cpp's `llama` architecture.

What is written: the hyperparameters, the tokenizer (`vocab`), every tensor under llama.cpp's names with q/k
in its rope order (`layout`), ternary BitLinear weights as codes in a ternary block type with their exact
per-tensor scale (`ternary`), the embedding and an untied LM head in F32 (exact: what the agent computes with,
int8-row embeddings of a bundle included) or, on request, F16 / Q8_0 (`embedding`), every other tensor in F32. Then the file is read back (`reload`) and its logits compared with
the agent's.

What llama.cpp cannot express is refused in one line when the file would compute something else, and noted in
one line when the difference is only in how the same weights are run:

* refused: a non-llama architecture, rotary scaling, an activation other than SiLU, BitLinear sub-layer norms
  (`bitnet.sub_norm=true` puts an RMSNorm before every ternary layer; llama.cpp's `llama` architecture has
  none, and its `bitnet` architecture has them only before the attention output and the down projection, and
  requires those), an unfinished warm-up, parameters outside the llama layout, a non-standard tokenizer;
* noted: BitNet's per-token 8-bit absmax activation quantization (llama.cpp quantizes activations per block of
  256 or 32 values for its own dot products instead), a ternary LM head (no output scale for `llama`: dense
  F32), and extensions that live outside the weights (Quiet-STaR head, experts, tools).

Exercise: ``pytest tests/models/test_gguf_export.py``; ``agent-forge export RUN --gguf OUT.gguf``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
from torch import nn

from ....errors import ForgeError
from ..ternary.layer import BitLinear
from ..ternary.packed import PackedBitLinear
from ..ternary.packing import unpack_kernel
from .embedding import embedding_type, encode_matrix, usable_type
from .layout import (
    LAYER_NAMES,
    LAYER_NORMS,
    ROPE_PERMUTED,
    head_dim,
    rope_scaling_type,
    rope_theta,
    to_ggml_rope_order,
)
from .reload import (  # base names written as codes (+ `.scale`): the reader rebuilds them
    KEY_ACT_BITS,
    KEY_TERNARY,
)
from .ternary import bits_per_weight, choose_type, encode_codes, ternary_type
from .vocab import tokenizer_vocab, write_vocab

ARCH = "llama"
ACTIVATION_NOTE = ("activations: BitNet quantizes each token's activations to 8 bits (absmax); llama.cpp's llama "
                   "architecture cannot express that and quantizes them per block for its own dot products "
                   "(Q8_K for TQ2_0/TQ1_0, Q8_0 for Q4_0), so its logits differ from the agent's by that rounding")
EXTENSION_NOTES = {
    "thoughts": "Quiet-STaR: the mixing head and thinking generation are not in the GGUF; llama.cpp answers "
                "without thoughts (and does not suppress the delimiter tokens)",
    "experts": "experts: the expert vectors and their router are not in the GGUF; it holds the base weights",
    "tools": "tools: tool execution is the runtime's job; the GGUF holds the model only",
}


@dataclass
class Linear:
    """One linear layer as GGUF needs it: ternary codes and scale, or a dense weight; and its bias."""

    codes: np.ndarray | None = None
    scale: float | None = None
    dense: np.ndarray | None = None
    bias: np.ndarray | None = None
    act_bits: int | None = None


@dataclass
class GGUFExport:
    """What `export_gguf` wrote and measured."""

    path: Path
    file_bytes: int
    tensor_types: dict[str, int]  # GGML type name -> number of weight tensors
    ternary_weights: int
    ternary_bits_per_weight: float  # stored bits per ternary weight (codes and scales)
    notes: list[str] = field(default_factory=list)
    check: object | None = None  # reload.RoundTrip

    def lines(self) -> list[str]:
        types = ", ".join(f"{n} {k}" for k, n in sorted(self.tensor_types.items()))
        out = [f"wrote {self.path} ({self.file_bytes / 2**20:.1f} MiB; weight tensors: {types})"]
        if self.ternary_weights:
            out.append(f"ternary weights: {self.ternary_weights:,} at {self.ternary_bits_per_weight:.2f} bits each")
        if self.check is not None:
            out.append(self.check.summary())
        return out + [f"note: {n}" for n in self.notes]


def _linear(module: nn.Module, name: str) -> Linear:
    """Codes/scale or dense weight of a BitLinear, a packed layer or a plain linear; ForgeError if inexpressible."""
    bias = getattr(module, "bias", None)
    bias = None if bias is None else bias.detach().float().cpu().numpy()
    if isinstance(module, BitLinear):
        if module.rms_norm is not None:
            raise ForgeError(
                f"{name} has a BitNet sub-layer norm (bitnet.sub_norm=true): llama.cpp's llama architecture has no norm "
                "there (its bitnet architecture has them only before attn_output and ffn_down), so it cannot be exported"
            )
        if module.strength != 1.0:
            raise ForgeError(f"{name} is still warming up (strength {module.strength:g}); export a fully ternary agent")
        codes, gamma = module.ternary()
        return Linear(codes=codes.cpu().numpy(), scale=float(gamma), bias=bias, act_bits=module.act_bits)
    if isinstance(module, PackedBitLinear):
        if module.rms_norm is not None:
            raise ForgeError(f"{name} has a BitNet sub-layer norm (bitnet.sub_norm=true), which GGUF's llama architecture cannot express")
        codes = unpack_kernel(module.packed, module.in_features)
        return Linear(codes=codes.numpy(), scale=module.gamma, bias=bias, act_bits=module.act_bits)
    if isinstance(module, nn.Linear):
        return Linear(dense=module.weight.detach().float().cpu().numpy(), bias=bias)
    raise ForgeError(f"{name} is a {type(module).__name__}, which the GGUF export does not know how to write")


def _check_architecture(model) -> None:
    config = model.config
    if getattr(config, "model_type", None) != ARCH:
        raise ForgeError(f"GGUF export writes llama.cpp's llama architecture; this agent is a {config.model_type!r} model")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ForgeError(f"GGUF export: the llama architecture uses SiLU, this model uses {config.hidden_act!r}")
    kind = rope_scaling_type(config)
    if kind != "default":
        raise ForgeError(f"GGUF export: rotary scaling {kind!r} is not written by this exporter")


def _hyperparameters(writer: GGUFWriter, config, name: str) -> None:
    n_head = config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(n_head))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or n_head))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_rope_dimension_count(head_dim(config))
    writer.add_key_length(head_dim(config))
    writer.add_value_length(head_dim(config))
    writer.add_vocab_size(int(config.vocab_size))


class _Tensors:
    """Collects the tensors to write, counting types and ternary storage."""

    def __init__(self, writer: GGUFWriter, preferred: GGMLQuantizationType) -> None:
        self.writer, self.preferred = writer, preferred
        self.types: Counter = Counter()
        self.ternary: list[str] = []
        self.ternary_weights = 0
        self.ternary_bits = 0.0
        self.fallback: Counter = Counter()
        self.act_bits: set[int] = set()
        self.notes: list[str] = []

    def dense(self, name: str, array: np.ndarray) -> None:
        self.writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        if array.ndim == 2:
            self.types["F32"] += 1

    def matrix(self, name: str, array: np.ndarray, qtype: GGMLQuantizationType) -> None:
        """The embedding or an untied LM head, in the chosen embedding type."""
        used = usable_type(qtype, array.shape[1])
        if used != qtype:
            self.notes.append(f"{name}: rows of {array.shape[1]} values do not fill {qtype.name} blocks; written as {used.name}")
        raw = None if used in (GGMLQuantizationType.F32, GGMLQuantizationType.F16) else used
        self.writer.add_tensor(name, encode_matrix(array, used), raw_dtype=raw)
        self.types[used.name] += 1

    def linear(self, base: str, layer: Linear, n_head: int | None = None) -> None:
        permute = (lambda a: to_ggml_rope_order(a, n_head)) if n_head else (lambda a: a)
        if layer.bias is not None:
            self.dense(f"{base}.bias", permute(layer.bias))
        if layer.codes is None:
            self.dense(f"{base}.weight", permute(layer.dense))
            return
        codes = np.ascontiguousarray(permute(layer.codes))
        qtype = choose_type(codes.shape[1], self.preferred)
        if qtype != self.preferred:
            self.fallback[(qtype, codes.shape[1])] += 1
        self.writer.add_tensor(f"{base}.weight", encode_codes(codes, qtype), raw_dtype=qtype)
        self.writer.add_tensor(f"{base}.scale", np.array([layer.scale], dtype=np.float32))
        self.types[qtype.name] += 1
        self.ternary.append(base)
        self.ternary_weights += codes.size
        self.ternary_bits += codes.size * bits_per_weight(qtype) + 32
        self.act_bits.add(int(layer.act_bits))


def _fallback_notes(tensors: _Tensors) -> list[str]:
    notes = []
    for (qtype, width), count in sorted(tensors.fallback.items(), key=lambda kv: kv[0][1]):
        why = f"their rows ({width} values) are not a multiple of {tensors.preferred.name}'s 256-value block"
        if qtype == GGMLQuantizationType.F16:
            why += " nor of Q4_0's 32"
        notes.append(f"{count} ternary tensor(s) as {qtype.name} ({bits_per_weight(qtype):.1f} bits/weight, exact): {why}")
    return notes


def write_gguf(agent, path: Path, *, ternary: str = "TQ2_0", embedding: str = "F32", name: str | None = None) -> GGUFExport:
    """Write the GGUF file (atomically: a temporary file renamed into place); no round-trip check."""
    model, tokenizer = agent.model, agent.tokenizer
    _check_architecture(model)
    config = model.config
    preferred = ternary_type(ternary)
    embedding_qtype = embedding_type(embedding)
    vocab = tokenizer_vocab(tokenizer, int(config.vocab_size))
    notes = list(vocab.notes)

    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = GGUFWriter(str(temp), ARCH)
    try:
        _hyperparameters(writer, config, name or path.stem)
        write_vocab(writer, vocab)
        tensors = _Tensors(writer, preferred)
        used: set[str] = set()
        base = model.model
        tensors.matrix("token_embd.weight", base.embed_tokens.weight.detach().float().cpu().numpy(), embedding_qtype)
        used.add("model.embed_tokens")
        for i, block in enumerate(base.layers):
            for hf, gg in LAYER_NORMS.items():
                tensors.dense(f"blk.{i}.{gg}.weight", getattr(block, hf).weight.detach().float().cpu().numpy())
                used.add(f"model.layers.{i}.{hf}")
            for hf, gg in LAYER_NAMES.items():
                module = block.get_submodule(hf)
                n_head = None  # q and k rows go into llama.cpp's rope order, per (key/value) head
                if gg in ROPE_PERMUTED:
                    n_head = getattr(config, ROPE_PERMUTED[gg], None) or config.num_attention_heads
                tensors.linear(f"blk.{i}.{gg}", _linear(module, f"model.layers.{i}.{hf}"), n_head)
                used.add(f"model.layers.{i}.{hf}")
        tensors.dense("output_norm.weight", base.norm.weight.detach().float().cpu().numpy())
        used.add("model.norm")
        head = model.get_output_embeddings()
        tied = head is not None and head.weight is base.embed_tokens.weight
        if head is not None and not tied:
            layer = _linear(head, "lm_head")
            if layer.codes is None:
                tensors.matrix("output.weight", layer.dense, embedding_qtype)
            else:  # llama.cpp scales the output tensor only for NVFP4: store the exact values dense
                notes.append("lm_head is ternary, but llama.cpp has no output scale for the llama architecture: "
                             "written as dense F32 (exact values, no compression)")
                tensors.matrix("output.weight", layer.codes.astype(np.float32) * np.float32(layer.scale),
                               GGMLQuantizationType.F32)
                tensors.ternary.append("output")
                tensors.act_bits.add(int(layer.act_bits))
        used.add("lm_head")
        _check_nothing_left(model, used)
        notes.extend(tensors.notes)
        if tensors.ternary:
            writer.add_file_type(LlamaFileType.MOSTLY_TQ1_0 if preferred == GGMLQuantizationType.TQ1_0 else LlamaFileType.MOSTLY_TQ2_0)
            writer.add_array(KEY_TERNARY, tensors.ternary)
            if len(tensors.act_bits) != 1:
                raise ForgeError(f"ternary layers use different activation bits {sorted(tensors.act_bits)}")
            writer.add_uint32(KEY_ACT_BITS, tensors.act_bits.pop())
            notes.append(ACTIVATION_NOTE)
            notes.extend(_fallback_notes(tensors))
        else:
            writer.add_file_type(LlamaFileType.ALL_F32)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, path)
    except BaseException:
        writer.close()
        temp.unlink(missing_ok=True)
        raise
    notes.extend(note for key, note in EXTENSION_NOTES.items() if key in getattr(agent, "extensions", {}))
    bits = tensors.ternary_bits / tensors.ternary_weights if tensors.ternary_weights else 0.0
    return GGUFExport(path, path.stat().st_size, dict(tensors.types), tensors.ternary_weights, bits, notes)


def _check_nothing_left(model, used: set[str]) -> None:
    """Every parameter must have been written: anything else would silently vanish from the GGUF."""
    for pname, _ in model.named_parameters():
        if not any(pname == u or pname.startswith(u + ".") for u in used):
            raise ForgeError(f"parameter {pname} has no place in llama.cpp's llama architecture; cannot export it")


def export_gguf(agent, path: str | os.PathLike, *, ternary: str = "TQ2_0", check: bool = True,
                prompts: Sequence[str] | None = None, name: str | None = None, embedding: str = "F32",
                check_tokenizer: bool = True) -> GGUFExport:
    """Write `agent` as a llama-architecture GGUF at `path` and (by default) check it by reading it back.

    The check loads the file with `reload.load_gguf_model` and compares its logits with the agent's on
    `prompts` (`reload.CHECK_PROMPTS` by default) and, with `check_tokenizer`, that the tokenizer rebuilt from
    the file encodes them identically; a difference beyond the tolerance raises ForgeError after
    removing the file, so a GGUF that does not reproduce the agent is never left behind.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".gguf":
        raise ForgeError(f"{path}: a GGUF file name must end in .gguf")
    if path.is_dir():
        raise ForgeError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ForgeError(f"{path}: folder {path.parent} does not exist")
    result = write_gguf(agent, path, ternary=ternary, embedding=embedding, name=name)
    if check:
        from .reload import round_trip

        result.check = round_trip(agent, path, prompts, check_tokenizer=check_tokenizer)
        if not result.check.passed:
            path.unlink(missing_ok=True)
            raise ForgeError(f"GGUF round trip failed, file removed: {result.check.summary()}")
    return result
