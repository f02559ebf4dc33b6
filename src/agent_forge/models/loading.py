"""Load a causal language model and its tokenizer from a Hugging Face folder or a GGUF file.

Every way the input can be wrong is checked before transformers sees it, so the user gets one line that says
what is wrong with which file instead of a deep stack trace: a missing path, a folder without config.json or
without weights, a truncated or corrupted safetensors or GGUF file, an architecture transformers cannot load
as a causal LM, weights that leave parameters uninitialised. GGUF weights are dequantized into an ordinary
model (transformers' GGUF support), so it can be trained and saved like any other; the file is parsed once
per load (`_gguf_read_once`), not once per part (header check, tokenizer, config, weights).

Exercise: `python -c "from agent_forge.models import load_model; print(load_model('runs/tiny/00-seed/base')[0])"`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import transformers
from packaging.version import Version
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..errors import ForgeError
from .device import resolve_device, resolve_dtype

log = logging.getLogger("agent_forge.models")

# transformers 4.56 renamed from_pretrained's `torch_dtype` to `dtype`
_DTYPE_KW = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load_model(
    source: str | os.PathLike, *, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode on `device`, tokenizer) from a HF model folder or a `.gguf` file.

    `device`/`dtype` default to `default_device()` / `default_dtype(device)`; strings like "cpu", "auto",
    "bfloat16" are accepted. The tokenizer always has a pad token (eos stands in when the model has none).
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise ForgeError(f"model not found: {path}")
    if path.is_file() and path.suffix.lower() == ".gguf":
        with _gguf_read_once():  # the export check and the load share one parse of the file
            if _is_ternary_gguf_export(path):
                return _load_ternary_gguf(path, device, dtype)
            return _load_resolved(path, device, dtype)
    return _load_resolved(path, device, dtype)


def _load_resolved(path: Path, device, dtype):
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ForgeError(f"{path} is a file but not a .gguf; give a Hugging Face model folder or a .gguf file")
        model, tokenizer = _load_gguf(path, dtype)
    else:
        model, tokenizer = _load_folder(path, dtype)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def _load_folder(path: Path, dtype: torch.dtype):
    config_file = path / "config.json"
    if not config_file.is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; to load a GGUF give the file itself, e.g. {path / ggufs[0]}" if ggufs else ""
        raise ForgeError(f"{path} has no config.json, so it is not a Hugging Face model folder{hint}")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ForgeError(f"cannot read {config_file}: {_first_line(exc)}") from None
    _check_causal_lm(config.model_type, path)
    _check_weights(path)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **{_DTYPE_KW: dtype})
    except Exception as exc:  # transformers raises many types for bad checkpoints; all are the user's input
        raise ForgeError(f"cannot load the model in {path}: {_first_line(exc)}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ForgeError(
            f"the weights in {path} lack {len(missing)} tensor(s) the {config.model_type} architecture needs "
            f"(e.g. {missing[0]}); refusing to fill them with random values"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ForgeError(f"cannot load a tokenizer from {path}: {_first_line(exc)}") from None
    return model, tokenizer


def _check_causal_lm(model_type: str | None, where: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ForgeError(f"{where}: architecture {model_type!r} is not a causal language model transformers can load")


def _check_weights(path: Path) -> None:
    """Find the weight files and check that every safetensors file is complete (header and data)."""
    index_file = path / "model.safetensors.index.json"
    if index_file.is_file():
        try:
            shards = sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError):
            raise ForgeError(f"{index_file} is not a valid safetensors index") from None
        for shard in shards:
            if not (path / shard).is_file():
                raise ForgeError(f"{path}: weight shard {shard} named in {index_file.name} is missing")
        files = [path / s for s in shards]
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        if any(path.glob("pytorch_model*.bin")):
            return  # legacy pickle weights: transformers validates them while loading
        raise ForgeError(f"{path} has a config.json but no weights (*.safetensors)")
    for file in files:
        check_safetensors_file(file)


def check_safetensors_file(file: Path) -> None:
    """ForgeError unless `file` has a well-formed safetensors header and all the data it declares."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ForgeError(f"{file} is truncated (only {size} bytes): not a complete safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise ForgeError(f"{file} is truncated or corrupted: its header claims {header_len} bytes, the file has {size}")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ForgeError(f"{file} is corrupted: its safetensors header is not valid JSON") from None
    needed = 8 + header_len + max(ends, default=0)
    if needed > size:
        raise ForgeError(f"{file} is truncated: its tensors need {needed} bytes but the file has {size}")


def _load_gguf(path: Path, dtype: torch.dtype):
    log.info("loading %s (GGUF, dequantizing)", path)
    with _gguf_read_once():
        architecture = check_gguf_file(path)
        supported = _gguf_architectures()
        if supported and architecture not in supported:
            raise ForgeError(f"{path}: GGUF architecture {architecture!r} is not supported by transformers' GGUF loader")
        folder, name = str(path.parent), path.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **_dequantize_kw(name), **{_DTYPE_KW: dtype})
        except Exception as exc:
            raise ForgeError(f"cannot load GGUF {path}: {_first_line(exc)}") from None
    _forget_gguf_origin(model)
    return model, tokenizer


def _is_ternary_gguf_export(path: Path) -> bool:
    """A GGUF written by `agent-forge export --gguf` with ternary tensors: codes plus `.scale` tensors, which
    transformers' GGUF loader would ignore (it would load the codes unscaled), so it is loaded by our reader."""
    check_gguf_file(path)
    from .formats.gguf_export import is_forge_ternary_gguf

    return is_forge_ternary_gguf(path)


def _load_ternary_gguf(path: Path, device, dtype):
    """The exported ternary GGUF as a model with packed BitNet layers (CPU, fp32: the kernel's only target)."""
    from .formats.gguf_export import load_gguf_model

    on_cpu = device in (None, "auto") or torch.device(device).type == "cpu"
    if not on_cpu or dtype not in (None, "auto", "float32", torch.float32):
        raise ForgeError(f"{path} is a ternary GGUF export: it runs on the CPU in float32 only")
    log.info("loading %s (ternary GGUF export, packed layers)", path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:
        raise ForgeError(f"cannot load the tokenizer of GGUF {path}: {_first_line(exc)}") from None
    model = load_gguf_model(path)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Parse each GGUF file once while loading it.

    The header check, the tokenizer, the config and the weights each open the file with `gguf.GGUFReader`
    (transformers imports it when called), and parsing a real file's metadata (a 49k-token vocabulary) takes
    seconds each time: within this block every reader of one file is the same, already parsed object.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def shared_reader(file, mode="r"):
        key = (os.path.realpath(os.fspath(file)), mode)
        if key not in readers:
            readers[key] = original(file, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def _dequantize_kw(gguf_name: str) -> dict:
    """Ask for dense weights: newer transformers keep GGUF blocks on GPUs with a kernel, which cannot be trained."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantize
        return {}
    return {"quantization_config": GgufConfig(gguf_file=gguf_name, dequantize=True)}


def check_gguf_file(path: Path) -> str:
    """Parse a GGUF file's header and tensor table; return its architecture or raise ForgeError."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ForgeError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))  # looked up at call time: `_gguf_read_once` may share it
    except Exception as exc:  # the reader fails with assorted errors on cut or garbled files
        raise ForgeError(f"{path} is truncated or corrupted: {_first_line(exc)}") from None
    size = path.stat().st_size
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise ForgeError(f"{path} is truncated: tensor {tensor.name} ends past the end of the file")
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ForgeError(f"{path} has no general.architecture field, so its model type is unknown")
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def _gguf_architectures() -> set[str]:
    """Architectures transformers' GGUF support knows (empty if this version hides the tables: then just try)."""
    names: set[str] = set()
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

        names |= set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}
    except ImportError:
        pass
    try:
        from transformers.integrations.gguf import GGUF_CONFIG_ARCHS

        names |= set(GGUF_CONFIG_ARCHS)
    except ImportError:
        pass
    if names:
        # llama.cpp spells some architectures differently from transformers' model types
        names |= {n.replace("_", "") for n in names} | {n.replace("_", "-") for n in names}
    return names


def _forget_gguf_origin(model: PreTrainedModel) -> None:
    """Make a dequantized GGUF model an ordinary one, so that saving writes a plain, loadable HF folder.

    transformers remembers the GGUF "quantizer" even after dequantizing and then refuses to save the model.
    """
    kept = [type(m).__name__ for m in model.modules() if type(m).__module__.startswith("transformers.integrations.gguf")]
    if kept:
        raise ForgeError(f"transformers kept GGUF-quantized modules ({kept[0]}); this version cannot dequantize them")
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    try:
        model.is_quantized = False
    except AttributeError:  # a read-only property derived from hf_quantizer in some versions
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
