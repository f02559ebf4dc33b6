"""Turning a model ternary and keeping it so: the helpers every stage after BitNet uses.

A ternary model is an ordinary transformers model whose selected ``nn.Linear`` layers are replaced by
``BitLinear``, plus a marker in ``model.config.forge_bitnet`` (written to ``config.json`` by ``save_model``)
that records how it was converted. On disk it is an ordinary HF folder: the latent full-precision weights sit
under the usual ``...q_proj.weight`` keys, so ``load_model`` loads it like any model; ``restore_bitlinear``
then swaps the recorded layers back to ``BitLinear`` so training continues on the latent weights.

`models.agent.load_agent` calls ``restore_bitlinear`` for every consumer; a stage that added linear layers
calls ``keep_ternary(model)`` (converts new linears, re-asserts full strength) before ``save_agent``.

Exercise: ``pytest tests/stages/bitnet/test_bitnet_convert.py``.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ....errors import ForgeError
from .layer import BitLinear

MARKER = "forge_bitnet"
MARKER_FORMAT = 1
DEFAULT_EXCLUDE = ("lm_head",)


def _excluded(name: str, patterns: Iterable[str]) -> bool:
    """A module is excluded when a pattern matches its full name or its last component (fnmatch syntax)."""
    leaf = name.rsplit(".", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(leaf, p) for p in patterns)


def convertible_linears(model: nn.Module, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> list[str]:
    """Names of the plain ``nn.Linear`` modules that conversion would replace."""
    exclude = list(exclude)
    return [
        name for name, module in model.named_modules()
        if type(module) is nn.Linear and not _excluded(name, exclude)
    ]


def bitlinear_layers(model: nn.Module) -> dict[str, BitLinear]:
    """Every BitLinear in the model, by module name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, BitLinear)}


def _marker(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    value = getattr(config, MARKER, None) if config is not None else None
    return value if isinstance(value, dict) else None


def _write_marker(model: nn.Module, *, exclude: list[str], sub_norm: bool, norm_eps: float, act_bits: int) -> None:
    config = getattr(model, "config", None)
    if config is None:
        return
    setattr(config, MARKER, {
        "format": MARKER_FORMAT,
        "modules": sorted(bitlinear_layers(model)),
        "exclude": list(exclude),
        "sub_norm": bool(sub_norm),
        "norm_eps": float(norm_eps),
        "act_bits": int(act_bits),
    })


def convert_to_bitlinear(
    model: nn.Module,
    *,
    exclude: Iterable[str] = DEFAULT_EXCLUDE,
    sub_norm: bool = False,
    norm_eps: float = 1e-6,
    act_bits: int = 8,
    strength: float = 1.0,
) -> list[str]:
    """Replace every non-excluded ``nn.Linear`` in place by a BitLinear sharing its parameters.

    ``strength=1`` is the naive (immediate) conversion; ``strength=0`` starts a warm-up with an unchanged
    function. Returns the converted module names; raises ForgeError if nothing could be converted.
    """
    exclude = list(exclude)
    names = convertible_linears(model, exclude)
    if not names:
        raise ForgeError(f"no linear layers to convert to BitLinear (exclusions {exclude} matched all of them)")
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    tied = [n for n in names if id(model.get_submodule(n).weight) in embedding_weights]
    if tied:
        raise ForgeError(f"{tied[0]} shares its weight with an input embedding (tied); add it to bitnet.exclude")
    for name in names:
        linear = model.get_submodule(name)
        layer = BitLinear.from_linear(linear, sub_norm=sub_norm, norm_eps=norm_eps, act_bits=act_bits, strength=strength)
        model.set_submodule(name, layer)
    _write_marker(model, exclude=exclude, sub_norm=sub_norm, norm_eps=norm_eps, act_bits=act_bits)
    return names


def set_quant_strength(model: nn.Module, strength: float) -> None:
    """Set the warm-up lambda of every BitLinear (0 = full precision, 1 = ternary)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"quantization strength must be in [0, 1], got {strength}")
    for layer in bitlinear_layers(model).values():
        layer.strength = float(strength)


def is_ternary(model: nn.Module) -> bool:
    """True when the model computes with ternary weights: BitLinear layers, all at full strength, and no
    plain linear left that its recorded exclusions would have converted."""
    layers = bitlinear_layers(model)
    if not layers or any(layer.strength != 1.0 for layer in layers.values()):
        return False
    marker = _marker(model)
    exclude = marker["exclude"] if marker else list(DEFAULT_EXCLUDE)
    return not convertible_linears(model, exclude)


def is_ternary_checkpoint(config) -> bool:
    """True when a (loaded or saved) model config carries the BitNet marker, i.e. needs ``restore_bitlinear``."""
    return isinstance(getattr(config, MARKER, None), dict)


def keep_ternary(model: nn.Module) -> list[str]:
    """Make a ternary model fully ternary again after a stage changed it; returns newly converted names.

    Converts any plain linear its recorded exclusions do not cover (e.g. a head a stage just added) and sets
    every BitLinear to full strength. Raises ForgeError on a model that was never converted.
    """
    marker = _marker(model)
    layers = bitlinear_layers(model)
    if marker is None and not layers:
        raise ForgeError("keep_ternary: the model was never converted to BitNet (no BitLinear layers, no marker)")
    if marker is None:
        first = next(iter(layers.values()))
        marker = {"exclude": list(DEFAULT_EXCLUDE), "sub_norm": first.rms_norm is not None,
                  "norm_eps": first.rms_norm.eps if first.rms_norm is not None else 1e-6, "act_bits": first.act_bits}
    names = convertible_linears(model, marker["exclude"])
    for name in names:
        linear = model.get_submodule(name)
        model.set_submodule(name, BitLinear.from_linear(
            linear, sub_norm=marker["sub_norm"], norm_eps=marker["norm_eps"] or 1e-6, act_bits=marker["act_bits"]))
    set_quant_strength(model, 1.0)
    _write_marker(model, exclude=marker["exclude"], sub_norm=marker["sub_norm"],
                  norm_eps=marker["norm_eps"] or 1e-6, act_bits=marker["act_bits"])
    return names


def _read_extra_tensors(folder: Path, keys: set[str]) -> dict[str, torch.Tensor]:
    """Tensors under ``keys`` from the folder's safetensors files (plain loaders drop them as unexpected)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({folder / weight_map[k] for k in keys if k in weight_map})
    found: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in keys & set(handle.keys()):
                found[key] = handle.get_tensor(key)
    return found


def restore_bitlinear(model: nn.Module, source: str | Path | None = None) -> bool:
    """Rebuild the BitLinear layers of a model loaded from a saved ternary checkpoint; False if not ternary.

    The latent weights are already in place (same keys as ``nn.Linear``); only the sub-layer norms, which a
    plain loader drops, are read back from ``source`` (default: the folder the model was loaded from).
    """
    marker = _marker(model)
    if marker is None:
        return False
    if marker.get("format") != MARKER_FORMAT:
        raise ForgeError(f"unsupported BitNet checkpoint format {marker.get('format')!r} (expected {MARKER_FORMAT})")
    for name in marker["modules"]:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ForgeError(f"BitNet checkpoint names layer {name!r}, which this model does not have") from None
        if isinstance(module, BitLinear):
            continue
        if not isinstance(module, nn.Linear):
            raise ForgeError(f"BitNet checkpoint layer {name!r} is a {type(module).__name__}, not a linear layer")
        model.set_submodule(name, BitLinear.from_linear(
            module, sub_norm=marker["sub_norm"], norm_eps=marker["norm_eps"], act_bits=marker["act_bits"]))
    if marker["sub_norm"]:
        folder = Path(source) if source is not None else Path(getattr(model, "name_or_path", "") or ".")
        keys = {f"{name}.rms_norm.weight" for name in marker["modules"]}
        tensors = _read_extra_tensors(folder, keys) if folder.is_dir() else {}
        missing = sorted(keys - set(tensors))
        if missing:
            raise ForgeError(f"BitNet checkpoint at {folder} lacks sub-layer norm weights (first: {missing[0]})")
        for key, tensor in tensors.items():
            param = model.get_parameter(key)
            with torch.no_grad():
                param.copy_(tensor.to(param.dtype))
    set_quant_strength(model, 1.0)
    return True
