"""The packed ternary matmul for CPU: a small C kernel compiled at first use, with a torch fallback.

``ternary_linear(x, packed, gamma, in_features, bias)`` computes a BitNet b1.58 linear layer from weights
packed 2 bits each in the kernel layout (see ``packing.pack_kernel``): per-token int8 activations times
ternary weights, accumulated in integers, rescaled once per output. The C source next to this file is
compiled with ``gcc -O3 -march=native -fopenmp`` into a cache folder keyed by the source, the compiler flags
and the CPU's feature flags (``$AGENT_FORGE_KERNEL_DIR`` or ``~/.cache/agent_forge/kernels``) and called
through ctypes. If compilation fails, or ``AGENT_FORGE_TERNARY_KERNEL=torch`` is set, the same arithmetic
runs in torch one layer at a time (slower, same integers).

Exercise: ``pytest tests/stages/bitnet/test_bitnet_kernel.py``; ``python -m agent_forge.stages.bitnet.kernel``
compiles the kernel and prints which path is active.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from ..packing import unpack_kernel
from ..quant import activation_codes

SOURCE = Path(__file__).with_name("ternary_linear.c")
ABI_VERSION = 1
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"],
    ["-O3", "-fopenmp", "-fno-math-errno"],
    ["-O3"],
)

_lock = threading.Lock()
_loaded: "ctypes.CDLL | None | bool" = False  # False: not tried yet; None: tried and unavailable
_failure: str = ""


def _cpu_fingerprint() -> str:
    """The CPU feature flags: a binary built with -march=native must not be reused on a different CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("AGENT_FORGE_KERNEL_DIR")
    return Path(root) if root else Path.home() / ".cache" / "agent_forge" / "kernels"


def _compile(flags: list[str], target: Path) -> None:
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler found (gcc/cc)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # build under a unique name, then rename: concurrent processes never see a half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [compiler, *flags, "-shared", "-fPIC", "-std=c11", str(SOURCE), "-o", tmp, "-lm"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "compiler failed")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, f32p, u8p = ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p
    lib.tl_linear.argtypes = [f32p, i64, i64, u8p, i64, i64, ctypes.c_float, f32p, f32p, ctypes.c_int, ctypes.c_int]
    lib.tl_linear.restype = ctypes.c_int
    lib.tl_abi_version.restype = ctypes.c_int
    lib.tl_has_avx2.restype = ctypes.c_int
    if lib.tl_abi_version() != ABI_VERSION:
        raise RuntimeError("stale kernel library (ABI version mismatch)")
    return lib


def _load() -> ctypes.CDLL | None:
    global _loaded, _failure
    if _loaded is not False:
        return _loaded or None
    with _lock:
        if _loaded is not False:
            return _loaded or None
        if os.environ.get("AGENT_FORGE_TERNARY_KERNEL", "").lower() == "torch":
            _failure = "disabled by AGENT_FORGE_TERNARY_KERNEL=torch"
            _loaded = None
            return None
        errors = []
        source_hash = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
        for flags in _FLAG_SETS:
            key = hashlib.sha256(f"{source_hash}|{flags}|{_cpu_fingerprint()}".encode()).hexdigest()[:16]
            target = _cache_dir() / f"ternary_linear_{key}.so"
            try:
                if not target.is_file():
                    _compile(flags, target)
                _loaded = _bind(ctypes.CDLL(str(target)))
                return _loaded
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
        _failure = "; ".join(errors)
        warnings.warn(f"ternary C kernel unavailable, using the torch fallback ({_failure})", RuntimeWarning, stacklevel=3)
        _loaded = None
        return None


def kernel_available() -> bool:
    """True when the compiled C kernel is in use (compiles it on first call)."""
    return _load() is not None


def kernel_description() -> str:
    """One line saying which implementation runs the packed matmul and why."""
    lib = _load()
    if lib is None:
        return f"torch fallback ({_failure})"
    return f"C kernel ({'AVX2' if lib.tl_has_avx2() else 'scalar'})"


def _torch_linear(x: torch.Tensor, packed: torch.Tensor, gamma: float, in_features: int,
                  bias: torch.Tensor | None, act_bits: int) -> torch.Tensor:
    """The same integer arithmetic in torch; only this one layer's codes are ever expanded."""
    x_codes, x_scale = activation_codes(x, act_bits)
    w_codes = unpack_kernel(packed, in_features).float()
    y = torch.nn.functional.linear(x_codes, w_codes) * (gamma / x_scale)
    return y + bias if bias is not None else y


def ternary_linear(x: torch.Tensor, packed: torch.Tensor, gamma: float, in_features: int,
                   bias: torch.Tensor | None = None, act_bits: int = 8) -> torch.Tensor:
    """y = int8(x) @ ternary(W).T * gamma / s + bias from kernel-layout packed weights; fp32 in and out."""
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, layer expects {in_features}")
    lib = _load()
    if lib is None or x.device.type != "cpu" or x.requires_grad:
        return _torch_linear(x.float(), packed, gamma, in_features, bias, act_bits)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_features).float().contiguous()
    rows = packed.shape[0]
    out = torch.empty(x2.shape[0], rows, dtype=torch.float32)
    status = lib.tl_linear(
        x2.data_ptr(), x2.shape[0], in_features, packed.data_ptr(), rows, packed.shape[1], gamma,
        bias.data_ptr() if bias is not None else None, out.data_ptr(), act_bits, torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("ternary kernel could not allocate its activation buffer")
    return out.reshape(*lead, rows)


if __name__ == "__main__":
    print(kernel_description())
