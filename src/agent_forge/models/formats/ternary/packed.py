"""The packed 2-bit export of a ternary model, and CPU inference straight from it.

``export_packed(model, tokenizer, folder)`` writes an HF folder in the layout of transformers' ``bitnet``
quantization method (``quantization_config.quant_method == "bitnet"``, ``linear_class == "bitlinear"``,
offline mode): every converted linear layer stores ``weight`` as uint8 (out/4, in) with four ternary codes
per byte (see ``packing.pack_rows``) and ``weight_scale`` (1,) fp32 holding ``1 / gamma`` (transformers divides
its integer matmul by this value); ``rms_norm.weight`` when sub-layer norms are used; everything else
(embeddings, norms, the LM head) in fp32.

``load_packed(folder)`` builds the model skeleton without allocating its weights, puts a ``PackedBitLinear``
(kernel-layout uint8 weights, see ``kernel``) in place of each packed layer, converting one layer at a time,
and loads the remaining tensors — no fp32 copy of a packed layer ever exists.

Exercise: ``pytest tests/stages/bitnet/test_bitnet_packed.py``; ``python benchmarks/bench_bitnet_packed.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import nn

from ....errors import ForgeError
from ....utils.atomic import atomic_directory
from .convert import MARKER, bitlinear_layers, is_ternary
from .kernel import TernaryMatmul, repack_for_kernel
from .packing import pack_rows, unpack_rows

PACKED_FILE = "model.safetensors"
GAMMA_SUFFIX = "weight_gamma"  # `<layer>.weight_gamma`: the layer's exact gamma, beside transformers' weight_scale


def _layer_gamma(get, keys, name: str) -> float:
    """A packed layer's gamma: stored exactly, or (exports written before it was) 1 / weight_scale."""
    if f"{name}.{GAMMA_SUFFIX}" in keys:
        return float(get(f"{name}.{GAMMA_SUFFIX}").reshape(()))
    return 1.0 / float(get(f"{name}.weight_scale").reshape(()))


class PackedBitLinear(nn.Module):
    """Inference-only BitNet linear layer that computes from 2-bit packed weights (no float weight copy)."""

    def __init__(self, packed: torch.Tensor, gamma: float, in_features: int, bias: torch.Tensor | None = None,
                 rms_norm: nn.Module | None = None, act_bits: int = 8) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = packed.shape[0]
        self.gamma = float(gamma)
        self.act_bits = act_bits
        self.matmul = TernaryMatmul(packed, gamma, in_features, bias, act_bits)
        # registered so that .buffers() and memory accounting see them; the kernel reads these very tensors
        self.register_buffer("packed", self.matmul.packed, persistent=False)
        self.register_buffer("bias", self.matmul.bias, persistent=False)
        self.rms_norm = rms_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rms_norm is not None:
            x = self.rms_norm(x)
        y = self.matmul(x)
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"sub_norm={self.rms_norm is not None}, packed_bytes={self.packed.numel()}")


def export_packed(model: nn.Module, tokenizer, folder: str | Path) -> Path:
    """Write the 2-bit packed export of a ternary model (transformers bitnet layout); returns the folder."""
    target = Path(folder)
    with atomic_directory(target) as tmp:
        write_packed_files(model, tokenizer, tmp)
    return target


def write_packed_files(model: nn.Module, tokenizer, folder: Path) -> None:
    """The packed export's files into an existing (temporary) folder; `save_agent(..., packed=True)` adds the
    agent's extensions beside them in the same atomic write."""
    from safetensors.torch import save_file

    if not is_ternary(model):
        raise ForgeError("export_packed needs a fully ternary model (convert it and finish the warm-up first)")
    layers = bitlinear_layers(model)
    first = next(iter(layers.values()))
    if first.act_bits != 8:
        raise ForgeError("transformers' bitnet layout assumes 8-bit activations; export with act_bits=8")
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        codes, gamma = layer.ternary()
        tensors[f"{name}.weight"] = pack_rows(codes)
        tensors[f"{name}.weight_scale"] = (1.0 / gamma).reshape(1).float()
        # gamma itself too: 1 / (1 / gamma) comes back one ulp off for about one layer in eight, and the packed
        # model must compute with the very gamma the latent one does (transformers ignores the extra key)
        tensors[f"{name}.{GAMMA_SUFFIX}"] = gamma.reshape(1).float()
        if layer.bias is not None:
            tensors[f"{name}.bias"] = layer.bias.detach().float().clone()
        if layer.rms_norm is not None:
            tensors[f"{name}.rms_norm.weight"] = layer.rms_norm.weight.detach().float().clone()
    packed_prefixes = tuple(f"{name}." for name in layers)
    tied_name = _tied_output_name(model)
    for key, value in model.state_dict().items():
        if key.startswith(packed_prefixes) or key == tied_name:
            continue
        tensors[key] = value.detach().float().contiguous().clone()

    config = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(model.config)
    config.pop("_name_or_path", None)
    for key in ("dtype", "torch_dtype"):  # every float tensor is exported in fp32, whatever the model ran in
        if key in config:
            config[key] = "float32"
    marker = dict(config.get(MARKER) or getattr(model.config, MARKER))
    marker["packed"] = True
    config[MARKER] = marker
    config["quantization_config"] = {
        "quant_method": "bitnet",
        "linear_class": "bitlinear",
        "quantization_mode": "offline",
        "modules_to_not_convert": sorted(_unconverted_linear_names(model)),
        "use_rms_norm": bool(marker["sub_norm"]),
        "rms_norm_eps": float(marker["norm_eps"]),
    }
    save_file(tensors, str(folder / PACKED_FILE), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def _tied_output_name(model: nn.Module) -> str | None:
    """State-dict key of an output embedding tied to the input one (stored once, re-tied on load)."""
    if not getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        return None
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if out is None or inp is None or out.weight is not inp.weight:
        return None
    out_name = next((n for n, m in model.named_modules() if m is out), None)
    return f"{out_name}.weight"


def _unconverted_linear_names(model: nn.Module) -> list[str]:
    """Every plain linear module left in full precision (what transformers must not convert)."""
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file: per tensor dtype, shape and data offsets (no tensor data read)."""
    return _read_header(path)[0]


def _read_header(path: str | Path) -> tuple[dict, int]:
    """The header and the byte offset where tensor data starts (data offsets are relative to it)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length)), 8 + length


def packed_size_report(folder: str | Path) -> dict:
    """Bits per ternary weight and byte counts, measured from the packed export's file.

    ``bits_per_weight`` counts the stored bytes of every packed weight matrix and its scale, divided by the
    number of ternary weights they encode; ``file_bytes`` is the whole safetensors file.
    """
    folder = Path(folder)
    file = folder / PACKED_FILE
    if not file.is_file():
        raise ForgeError(f"no packed export at {folder} (missing {PACKED_FILE})")
    header = read_safetensors_header(file)
    packed_bytes = scale_bytes = weights = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        size = info["data_offsets"][1] - info["data_offsets"][0]
        if key.endswith(".weight") and info["dtype"] == "U8":
            packed_bytes += size
            rows, cols = info["shape"]
            weights += rows * 4 * cols
        elif key.endswith((".weight_scale", f".{GAMMA_SUFFIX}")):
            scale_bytes += size
    return {
        "ternary_weights": weights,
        "packed_weight_bytes": packed_bytes,
        "scale_bytes": scale_bytes,
        "bits_per_weight": 8 * (packed_bytes + scale_bytes) / max(1, weights),
        "file_bytes": file.stat().st_size,
    }


_SAFETENSORS_DTYPES = {
    "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64, "BOOL": torch.bool,
}


class _TensorReader:
    """Reads single tensors of a safetensors file into freshly allocated memory (no file mapping).

    A memory-mapped tensor stays tied to the file and its pages show up in resident memory in ways that make
    the packed model's footprint hard to account for; reading each tensor once into its final buffer keeps the
    load's peak at the final size plus one layer's temporaries.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            self.header, self.data_start = _read_header(file)
        except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
            raise ForgeError(f"corrupted packed weights in {file}: unreadable header ({exc.__class__.__name__})") from None
        self.header.pop("__metadata__", None)
        size = file.stat().st_size
        for key, info in self.header.items():
            if info.get("dtype") not in _SAFETENSORS_DTYPES or self.data_start + info["data_offsets"][1] > size:
                raise ForgeError(f"corrupted packed weights in {file}: tensor {key!r} is truncated or of unknown type")

    def keys(self):
        return self.header.keys()

    def get(self, key: str) -> torch.Tensor:
        info = self.header[key]
        begin, end = info["data_offsets"]
        tensor = torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        view = memoryview(tensor.view(torch.uint8).reshape(-1).numpy()) if tensor.numel() else memoryview(b"")
        if len(view) != end - begin:
            raise ForgeError(f"corrupted packed weights in {self.file}: tensor {key!r} has the wrong byte size")
        with self.file.open("rb") as handle:
            handle.seek(self.data_start + begin)
            handle.readinto(view)
        return tensor


def _skeleton(config):
    """The model with parameters on the meta device (buffers such as rotary tables computed normally)."""
    import transformers
    from accelerate import init_empty_weights
    from packaging.version import Version
    from transformers import AutoModelForCausalLM

    # transformers 4.56 renamed `torch_dtype` to `dtype`
    dtype_kw = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config, **{dtype_kw: torch.float32})


def is_packed_export(folder: str | Path) -> bool:
    """True when `folder` is a packed export written by `export_packed` (its config's marker says so)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        marker = json.loads(config.read_text()).get(MARKER)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(marker, dict) and bool(marker.get("packed"))


def load_packed(folder: str | Path, *, with_tokenizer: bool = True):
    """Load a packed export for CPU inference: (model with PackedBitLinear layers, tokenizer or None)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    folder = Path(folder)
    file = folder / PACKED_FILE
    if not (folder / "config.json").is_file() or not file.is_file():
        raise ForgeError(f"not a packed BitNet export: {folder} (needs config.json and {PACKED_FILE})")
    try:
        raw = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ForgeError(f"corrupted config.json in {folder}: {exc.msg}") from None
    marker = raw.get(MARKER)
    if not isinstance(marker, dict) or not marker.get("packed"):
        raise ForgeError(f"{folder} is not a packed BitNet export written by export_packed")
    raw.pop("quantization_config", None)  # we build our own layers; transformers' quantizer must not run
    config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k != "transformers_version"})
    model = _skeleton(config)
    reader = _TensorReader(file)
    keys = set(reader.keys())
    for name in marker["modules"]:
        if f"{name}.weight" not in keys or f"{name}.weight_scale" not in keys:
            raise ForgeError(f"packed export {folder} lacks the packed weight of layer {name!r}")
        old = model.get_submodule(name)
        norm = None
        if marker["sub_norm"]:
            norm = nn.RMSNorm(old.in_features, eps=marker["norm_eps"])
            with torch.no_grad():
                norm.weight.copy_(reader.get(f"{name}.rms_norm.weight"))
        bias = reader.get(f"{name}.bias") if f"{name}.bias" in keys else None
        gamma = _layer_gamma(reader.get, keys, name)
        kernel_layout = repack_for_kernel(reader.get(f"{name}.weight"))
        model.set_submodule(name, PackedBitLinear(kernel_layout, gamma, old.in_features, bias, norm, marker["act_bits"]))
    prefixes = tuple(f"{n}." for n in marker["modules"])
    rest = {k: reader.get(k) for k in keys if not k.startswith(prefixes)}
    # int8 rows (per-row absmax, written by the package stage): `<key>` int8 + `<key>_row_scale`, restored to fp32
    from ..bundle import ROW_SCALE, dequantize_rows

    for key in [k for k in rest if k.endswith(ROW_SCALE)]:
        base = key[: -len(ROW_SCALE)]
        if base not in rest or rest[base].dtype != torch.int8:
            raise ForgeError(f"packed export {folder}: {key} has no int8 tensor {base!r} beside it")
        rest[base] = dequantize_rows(rest[base], rest.pop(key))
    missing, unexpected = model.load_state_dict(rest, strict=False, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left or unexpected:
        raise ForgeError(f"packed export {folder} does not match its config (missing {left[:3]}, unexpected {unexpected[:3]})")
    model.requires_grad_(False)  # inference only: activations must not track gradients (the kernel needs plain tensors)
    model.eval()
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    tokenizer = None
    if with_tokenizer and (folder / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return model, tokenizer


def unpack_export_codes(folder: str | Path) -> dict[str, tuple[torch.Tensor, float]]:
    """Every packed layer of an export as (int8 codes, gamma): used to check that unpacking is exact."""
    from safetensors import safe_open

    folder = Path(folder)
    marker = json.loads((folder / "config.json").read_text())[MARKER]
    out = {}
    with safe_open(str(folder / PACKED_FILE), framework="pt") as handle:
        keys = set(handle.keys())
        for name in marker["modules"]:
            out[name] = (unpack_rows(handle.get_tensor(f"{name}.weight")), _layer_gamma(handle.get_tensor, keys, name))
    return out


__all__ = [
    "PackedBitLinear", "export_packed", "is_packed_export", "write_packed_files", "load_packed", "packed_size_report", "read_safetensors_header",
    "unpack_export_codes",
]
