"""Reading an exported GGUF back into a torch model, and the round-trip check `export_gguf` runs.

`load_gguf_model(path)` rebuilds the llama model from the file alone: hyperparameters from its metadata,
tensors dequantized with the `gguf` package, q/k rows back in transformers' rope order. The tensors listed
under `agent_forge.ternary.tensors` become the repo's `PackedBitLinear` (codes times the exact `.scale`, with
BitNet's per-token activation quantization at the recorded bits), so the reloaded model computes what the agent
computes: the check compares like with like, and any error in the file (a code, a scale, a permutation, a norm,
the embedding) shows up as a logit difference. transformers' own GGUF loader would ignore the `.scale` tensors,
which is why `models.load_model` sends files carrying that key here.

Tolerance: the agent is run in integer arithmetic for the comparison (`integer_arithmetic`: its BitLinear
layers swapped for packed layers built from their own codes and scales, a packed agent already is) and with
its embedding rounded as the file stores it (`embedding.rounded_embeddings`; nothing for F32), so both sides
multiply the same integers with the same kernel and differ only if the file differs (observed: 0, or
float noise of about 1e-6). Logits must agree within `1e-3 * max(1, max |logit|)` and the greedy token must
agree at every position: a wrong code, scale, permutation or norm moves logits by whole units. The difference
to a latent agent's own fake-quantized fp32 forward is reported too but not checked: that one is a property of
the agent (float rounding next to int8 rounding boundaries, amplified by depth), not of the file.

Exercise: ``pytest tests/models/test_gguf_export.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType

F32 = GGMLQuantizationType.F32

from ....errors import ForgeError
from ..ternary.layer import BitLinear
from ..ternary.packed import PackedBitLinear
from ..ternary.packing import pack_kernel
from .embedding import rounded_embeddings
from .layout import (
    GLOBAL_NAMES,
    LAYER_NAMES,
    LAYER_NORMS,
    ROPE_PERMUTED,
    from_ggml_rope_order,
)
from .ternary import decode

KEY_TERNARY = "agent_forge.ternary.tensors"
KEY_ACT_BITS = "agent_forge.ternary.act_bits"
CHECK_PROMPTS = ("What is 12 + 30?", "Reverse the word 'forge'.", "Name the capital of France in one word.")
RELATIVE_TOLERANCE = 1e-3

_HF_OF = {gg: hf for hf, gg in GLOBAL_NAMES.items()}
_HF_OF.update({gg: hf for hf, gg in LAYER_NAMES.items()})
_HF_OF.update({gg: hf for hf, gg in LAYER_NORMS.items()})


def _reader(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader fails with assorted errors on cut or garbled files
        raise ForgeError(f"{path} is not a readable GGUF file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def is_forge_ternary_gguf(path: str | os.PathLike) -> bool:
    """True for a GGUF this exporter wrote with ternary tensors (codes + `.scale`, which only it reads right)."""
    return KEY_TERNARY in _reader(Path(path)).fields


def _hf_name(name: str) -> tuple[str, str]:
    """GGUF tensor name -> (transformers module path, suffix), e.g. blk.3.attn_q.weight -> (model.layers.3.self_attn.q_proj, weight)."""
    stem, suffix = name.rsplit(".", 1)
    if stem.startswith("blk."):
        _, index, base = stem.split(".", 2)
        if base not in _HF_OF:
            raise ForgeError(f"GGUF tensor {name} is not part of the llama layout this reader knows")
        return f"model.layers.{index}.{_HF_OF[base]}", suffix
    if stem not in _HF_OF:
        raise ForgeError(f"GGUF tensor {name} is not part of the llama layout this reader knows")
    return _HF_OF[stem], suffix


def _config(reader, names: set[str]):
    from transformers import LlamaConfig

    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ForgeError(f"this reader rebuilds llama GGUFs; the file's architecture is {arch!r}")

    def get(key, default=None):
        value = _field(reader, f"llama.{key}", default)
        if value is None:
            raise ForgeError(f"GGUF metadata lacks llama.{key}")
        return value

    n_head = int(get("attention.head_count"))
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    ids = {role: _field(reader, f"tokenizer.ggml.{role}_token_id") for role in ("bos", "eos", "padding")}
    return LlamaConfig(
        vocab_size=int(get("vocab_size", len(tokens))), hidden_size=int(get("embedding_length")),
        intermediate_size=int(get("feed_forward_length")), num_hidden_layers=int(get("block_count")),
        num_attention_heads=n_head, num_key_value_heads=int(get("attention.head_count_kv", n_head)),
        head_dim=int(get("attention.key_length", int(get("embedding_length")) // n_head)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")), max_position_embeddings=int(get("context_length")),
        rope_parameters={"rope_type": "default", "rope_theta": float(get("rope.freq_base", 10000.0))},
        tie_word_embeddings="output.weight" not in names, attention_bias="blk.0.attn_q.bias" in names,
        mlp_bias="blk.0.ffn_up.bias" in names, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
        pad_token_id=ids["padding"],
    )


def load_gguf_model(path: str | os.PathLike):
    """The llama model in the GGUF at `path`, on the CPU in fp32, eval mode (ternary layers packed)."""
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    path = Path(path)
    reader = _reader(path)
    tensors = {t.name: t for t in reader.tensors}
    config = _config(reader, set(tensors))
    ternary = set(_field(reader, KEY_TERNARY, []) or [])
    act_bits = int(_field(reader, KEY_ACT_BITS, 8))
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}

    def array(name: str) -> np.ndarray:
        t = tensors[name]
        values = decode(t.data, t.tensor_type)
        base = name.rsplit(".", 1)[0].split(".")[-1]
        if base in ROPE_PERMUTED and not name.endswith(".scale"):
            values = from_ggml_rope_order(values, heads[base])
        return values

    with init_empty_weights(include_buffers=False):  # parameters on the meta device, filled from the file below
        model = LlamaForCausalLM(config)
    for base in sorted(ternary):
        module, _ = _hf_name(f"{base}.weight")
        codes = array(f"{base}.weight")
        if f"{base}.scale" in tensors:
            scale = float(array(f"{base}.scale").reshape(-1)[0])
        else:  # a dense ternary tensor: its values are +-scale and 0
            scale = float(np.abs(codes).max()) or 1.0
            codes = codes / scale
        if not np.isin(codes, (-1.0, 0.0, 1.0)).all():
            raise ForgeError(f"{path}: tensor {base}.weight is listed as ternary but holds other values")
        bias = torch.from_numpy(array(f"{base}.bias").copy()) if f"{base}.bias" in tensors else None
        old = model.get_submodule(module)
        kernel = pack_kernel(torch.from_numpy(codes.astype(np.int8)))
        model.set_submodule(module, PackedBitLinear(kernel, scale, old.in_features, bias, None, act_bits))
    state = {}
    for name in tensors:
        module, suffix = _hf_name(name)
        if name.rsplit(".", 1)[0] in ternary:
            continue
        state[f"{module}.{suffix}"] = torch.from_numpy(np.ascontiguousarray(array(name)).copy())
    _, unexpected = model.load_state_dict(state, strict=False, assign=True)  # missing ones are checked below (meta)
    if config.tie_word_embeddings:
        model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left or unexpected:
        raise ForgeError(f"{path} does not match its own metadata (missing {left[:3]}, unexpected {unexpected[:3]})")
    model.requires_grad_(False)
    return model.eval()


def _embedding_types(reader) -> list:
    """How the file stores the embedding and (when present and not ternary) the LM head."""
    types = {t.name: t.tensor_type for t in reader.tensors}
    ternary = set(_field(reader, KEY_TERNARY, []) or [])
    found = [types["token_embd.weight"]]
    if "output.weight" in types and "output" not in ternary:
        found.append(types["output.weight"])
    return found


@contextmanager
def integer_arithmetic(model):
    """Run a model's BitLinear layers as packed integer layers (the kernel) for the duration of the block.

    A latent agent's BitLinear computes in fp32 with fake-quantized activations and weights; the packed layers
    multiply the very same integer codes and rescale once. Mathematically equal, they differ in float rounding,
    and in a deep ternary network an activation that lands next to an int8 rounding boundary on one side and not
    the other can move whole logits (an untrained 30-layer conversion shows differences of a few units). The
    file check compares like with like: both models in integer arithmetic.
    """
    swapped = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, BitLinear) and module.rms_norm is None:
            codes, gamma = module.ternary()
            bias = None if module.bias is None else module.bias.detach().float().cpu()
            packed = PackedBitLinear(pack_kernel(codes.cpu()), float(gamma), module.in_features, bias, None, module.act_bits)
            swapped[name] = module
            model.set_submodule(name, packed)
    try:
        yield bool(swapped)
    finally:
        for name, module in swapped.items():
            model.set_submodule(name, module)


@dataclass
class RoundTrip:
    """The logit comparison between an agent and its GGUF read back."""

    max_abs_diff: float
    logit_scale: float
    tolerance: float
    argmax_agreement: float  # fraction of positions with the same greedy token
    positions: int
    tokenizer_matches: bool | None  # the GGUF's tokenizer (rebuilt by transformers) encodes the prompts identically
    latent_max_abs_diff: float | None = None  # against the agent as it is: fake-quantized, unrounded (not checked)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement == 1.0 and self.tokenizer_matches is not False

    def summary(self) -> str:
        tokens = {True: "same token ids", False: "DIFFERENT token ids", None: "tokenizer not checked"}[self.tokenizer_matches]
        latent = ("" if self.latent_max_abs_diff is None else
                  f" (against the agent's own forward, fake-quantized fp32 with unrounded embeddings: "
                  f"{self.latent_max_abs_diff:.2e})")
        return (f"round trip: max |logit difference| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.2e}, logits up to "
                f"{self.logit_scale:.1f}), greedy tokens agree at {self.argmax_agreement:.0%} of {self.positions} positions, "
                f"{tokens}: {'passed' if self.passed else 'FAILED'}" + latent)


def _gguf_tokenizer_ids(path: Path, prompts: Sequence[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return [tok(p)["input_ids"] for p in prompts]


@torch.no_grad()
def round_trip(agent, path: str | os.PathLike, prompts: Sequence[str] | None = None, *,
               check_tokenizer: bool = True) -> RoundTrip:
    """Load the GGUF back and compare its logits (and tokenizer) with `agent`'s on `prompts`."""
    from ...loading import (
        _gguf_read_once,  # one parse of the file for the model and the tokenizer
    )

    path = Path(path)
    prompts = list(prompts or CHECK_PROMPTS)
    with _gguf_read_once():
        model = load_gguf_model(path)
        gguf_ids = _gguf_tokenizer_ids(path, prompts) if check_tokenizer else None
        stored = _embedding_types(_reader(path))
    encoded = [agent.tokenizer(p)["input_ids"] for p in prompts]
    if next(agent.model.parameters()).device.type != "cpu":
        raise ForgeError("the GGUF round trip runs on the CPU: load the agent with device='cpu'")
    worst = scale = latent = 0.0
    agree = total = 0
    for ids in encoded:
        batch = torch.tensor([ids])
        theirs = model(input_ids=batch).logits[0].float()
        with integer_arithmetic(agent.model) as swapped, rounded_embeddings(agent.model, stored):
            ours = agent.model(input_ids=batch).logits[0].float()
        if swapped or len(stored) != stored.count(F32):  # the agent as it is, for the record
            latent = max(latent, float((agent.model(input_ids=batch).logits[0].float() - theirs).abs().max()))
        worst = max(worst, float((ours - theirs).abs().max()))
        scale = max(scale, float(ours.abs().max()))
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += len(ids)
    tokenizer_matches = None if gguf_ids is None else gguf_ids == encoded
    exact_agent = not any(isinstance(m, BitLinear) for m in agent.model.modules()) and len(stored) == stored.count(F32)
    return RoundTrip(worst, scale, RELATIVE_TOLERANCE * max(1.0, scale), agree / max(1, total), total, tokenizer_matches,
                     None if exact_agent else latent)
