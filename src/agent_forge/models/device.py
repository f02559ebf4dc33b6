"""Where models run and in which float type: sensible defaults that a user can override.

CUDA when it is available, else CPU. bfloat16 on a GPU that supports it; float32 otherwise, because CPUs
without native bf16 run bf16 matmuls far slower than fp32 and older GPUs would need loss scaling for fp16.
Exercise: `python -c "from agent_forge.models import default_device, default_dtype; d = default_device(); print(d, default_dtype(d))"`.
"""

from __future__ import annotations

import torch

from ..errors import ForgeError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_device() -> torch.device:
    """CUDA if a GPU is usable, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """bfloat16 on a CUDA device that supports it, float32 everywhere else."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_device(device: torch.device | str | None) -> torch.device:
    """Turn None/"auto"/"cpu"/"cuda[:n]" into a usable device; ForgeError if CUDA is asked for but absent."""
    if device is None or device == "auto":
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ForgeError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ForgeError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device | str | None = None) -> torch.dtype:
    """Turn None/"auto"/"float32"/"bfloat16"/"float16" (or a torch.dtype) into a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return default_dtype(resolve_device(device))
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ForgeError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None
