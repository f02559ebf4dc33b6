"""The packed ternary matmul for CPU: a small C kernel compiled at first use, with a torch fallback.

``TernaryMatmul(packed, gamma, in_features, bias, variant=...)(x)`` (or the one-off ``ternary_linear``) computes a
BitNet b1.58 linear layer from weights packed 2 bits each in the kernel layout (see ``packing.pack_kernel``):
per-token int8 activations times ternary weights, accumulated in integers, rescaled once per output. Three
variants compute the same integers (``VARIANTS``: ``maddubs``, ``sign``, ``lut``; see the C source's header);
``$AGENT_FORGE_TERNARY_VARIANT`` picks the default. Single-token calls split their output rows over
``torch.get_num_threads()`` OpenMP threads.

The C source next to this file is compiled with ``gcc -O3 -mavx2 -mfma -fopenmp`` when /proc/cpuinfo reports
AVX2 and FMA (explicit flags rather than ``-march=native``, which can emit instructions a virtual CPU reports but
does not run), else portable C, into a cache folder keyed by the source, the flags and the CPU's feature flags
(``$AGENT_FORGE_KERNEL_DIR`` or ``~/.cache/agent_forge/kernels``), and called through ctypes. If compilation
fails, or ``AGENT_FORGE_TERNARY_KERNEL=torch`` is set, the same arithmetic runs in torch one layer at a time
(slower, same integers). ``decode.PackedDecoder`` runs a whole decode step in the same library.

Exercise: ``pytest tests/stages/bitnet/test_bitnet_kernel.py``; ``python -m agent_forge.models.formats.ternary.kernel``
compiles the kernel and prints which path is active.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from .....utils import digest
from ..packing import kernel_row_bytes, rows_to_kernel, unpack_kernel
from ..quant import activation_codes

SOURCE = Path(__file__).with_name("ternary_linear.c")
ABI_VERSION = 5
VARIANTS = {"maddubs": 0, "sign": 1, "lut": 2}
DEFAULT_VARIANT = "maddubs"
_SIMD_FLAGS = ["-mavx2", "-mfma"]

log = logging.getLogger(__name__)
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


def _flag_sets() -> list[list[str]]:
    """Compiler flag sets to try in order: AVX2 only when the CPU reports it (the C code has no runtime dispatch)."""
    cpu = set(_cpu_fingerprint().split())
    simd = _SIMD_FLAGS if {"avx2", "fma"} <= cpu else []
    sets = [["-O3", *simd, "-fopenmp", "-fno-math-errno"], ["-O3", "-fopenmp", "-fno-math-errno"], ["-O3"]]
    return [s for i, s in enumerate(sets) if s not in sets[:i]]


def default_variant() -> str:
    """The matmul variant new layers use: ``$AGENT_FORGE_TERNARY_VARIANT`` or ``DEFAULT_VARIANT``."""
    name = os.environ.get("AGENT_FORGE_TERNARY_VARIANT", DEFAULT_VARIANT).lower()
    if name not in VARIANTS:
        raise ValueError(f"unknown ternary kernel variant {name!r}; expected one of {sorted(VARIANTS)}")
    return name


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


class _LayerArgs(ctypes.Structure):
    """Mirror of the C struct ``tl_layer``: a packed layer's constant arguments, built once per layer."""

    _fields_ = [
        ("weight", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("in_features", ctypes.c_int64),
        ("out_features", ctypes.c_int64),
        ("row_bytes", ctypes.c_int64),
        ("gamma", ctypes.c_float),
        ("act_bits", ctypes.c_int32),
        ("variant", ctypes.c_int32),
        ("lut_weight", ctypes.c_void_p),
    ]


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.tl_forward.argtypes = [ctypes.POINTER(_LayerArgs), ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.tl_forward.restype = ctypes.c_int
    lib.tl_rows_to_kernel.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
    lib.tl_rows_to_kernel.restype = None
    lib.tl_kernel_to_lut.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.tl_kernel_to_lut.restype = None
    lib.tl_decode_step.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.tl_decode_step.restype = ctypes.c_int64
    lib.tl_model_workspace_bytes.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.tl_model_workspace_bytes.restype = ctypes.c_int64
    lib.tl_abi_version.restype = ctypes.c_int
    lib.tl_has_avx2.restype = ctypes.c_int
    lib.tl_has_openmp.restype = ctypes.c_int
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
            _announce_fallback()
            _loaded = None
            return None
        if not SOURCE.is_file():
            _failure = f"kernel source {SOURCE.name} is not installed next to {Path(__file__).name}"
            _announce_fallback()
            _loaded = None
            return None
        errors = []
        source = SOURCE.read_text(encoding="utf-8")
        for flags in _flag_sets():
            key = digest({"source": source, "flags": flags, "cpu": _cpu_fingerprint()})
            target = _cache_dir() / f"ternary_linear_{key}.so"
            try:
                if not target.is_file():
                    _compile(flags, target)
                _loaded = _bind(ctypes.CDLL(str(target)))
                return _loaded
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
        _failure = "; ".join(errors)
        _announce_fallback()
        _loaded = None
        return None


def _announce_fallback() -> None:
    """Never silent: the fallback is slower, so the log (and the bitnet stage's metrics) say it is in use."""
    message = f"ternary C kernel unavailable, using the torch fallback ({_failure})"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def kernel_available() -> bool:
    """True when the compiled C kernel is in use (compiles it on first call)."""
    return _load() is not None


def kernel_description() -> str:
    """One line saying which implementation runs the packed matmul and why."""
    lib = _load()
    if lib is None:
        return f"torch fallback ({_failure})"
    simd = "AVX2" if lib.tl_has_avx2() else "scalar"
    threads = "OpenMP" if lib.tl_has_openmp() else "1 thread"
    return f"C kernel ({simd}, {threads}, default variant {default_variant()})"


def kernel_library() -> ctypes.CDLL | None:
    """The loaded C library (None on the torch fallback); used by ``decode.PackedDecoder``."""
    return _load()


def _torch_linear(x: torch.Tensor, packed: torch.Tensor, gamma: float, in_features: int,
                  bias: torch.Tensor | None, act_bits: int) -> torch.Tensor:
    """The same integer arithmetic in torch; only this one layer's codes are ever expanded."""
    x_codes, x_scale = activation_codes(x, act_bits)
    w_codes = unpack_kernel(packed, in_features).float()
    y = torch.nn.functional.linear(x_codes, w_codes) * (gamma / x_scale)
    return y + bias if bias is not None else y


class TernaryMatmul:
    """One packed layer bound to the kernel: ``y = layer(x)`` for fp32 ``x`` of any leading shape.

    Holds the packed weights (kernel layout, see ``packing.pack_kernel``), gamma and bias; the C path passes
    them as one prebuilt struct so that a call costs little more than the arithmetic, which is what decides
    single-token decoding speed on small layers.
    """

    def __init__(self, packed: torch.Tensor, gamma: float, in_features: int, bias: torch.Tensor | None = None,
                 act_bits: int = 8, variant: str | None = None) -> None:
        if packed.dtype != torch.uint8 or packed.dim() != 2:
            raise ValueError(f"packed weights must be a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
        self.packed = packed.contiguous()
        self.bias = None if bias is None else bias.detach().float().contiguous()
        self.gamma = float(gamma)
        self.in_features = in_features
        self.out_features = packed.shape[0]
        self.act_bits = act_bits
        self.variant = variant or default_variant()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown ternary kernel variant {self.variant!r}; expected one of {sorted(VARIANTS)}")
        self._lib = _load()
        self._args = None
        self.lut_weight = None
        if self._lib is not None:
            if self.variant == "lut":  # its own interleaved copy of the weights (same size as the packed rows)
                tiles = -(-self.out_features // 32)
                self.lut_weight = torch.empty(tiles * 32, self.packed.shape[1], dtype=torch.uint8)
                self._lib.tl_kernel_to_lut(self.packed.data_ptr(), self.out_features, self.packed.shape[1],
                                           self.lut_weight.data_ptr())
            self._args = _LayerArgs(
                self.packed.data_ptr(), self.bias.data_ptr() if self.bias is not None else None, in_features,
                self.out_features, self.packed.shape[1], self.gamma, act_bits, VARIANTS[self.variant],
                self.lut_weight.data_ptr() if self.lut_weight is not None else None,
            )
            self._args_ref = ctypes.byref(self._args)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features, layer expects {self.in_features}")
        if self._lib is None or x.device.type != "cpu" or x.requires_grad:
            return _torch_linear(x.float(), self.packed, self.gamma, self.in_features, self.bias, self.act_bits)
        if x.dtype != torch.float32 or not x.is_contiguous():
            x = x.float().contiguous()
        out = torch.empty(x.shape[:-1] + (self.out_features,))
        if out.numel() == 0:
            return out
        status = self._lib.tl_forward(self._args_ref, x.data_ptr(), x.numel() // self.in_features, out.data_ptr(),
                                      torch.get_num_threads())
        if status != 0:
            raise MemoryError("ternary kernel could not allocate its activation buffer")
        return out


def repack_for_kernel(rows_packed: torch.Tensor) -> torch.Tensor:
    """transformers' row layout -> the kernel layout; in C when available (no temporaries), else in torch."""
    if rows_packed.dtype != torch.uint8 or rows_packed.dim() != 2:
        raise ValueError(f"expected a 2-D uint8 tensor, got {rows_packed.dtype} {tuple(rows_packed.shape)}")
    lib = _load()
    if lib is None:
        return rows_to_kernel(rows_packed)
    rows_packed = rows_packed.contiguous()
    n, k = rows_packed.shape[0] * 4, rows_packed.shape[1]
    out = torch.empty(n, kernel_row_bytes(k), dtype=torch.uint8)
    lib.tl_rows_to_kernel(rows_packed.data_ptr(), n, k, out.data_ptr(), out.shape[1])
    return out


def ternary_linear(x: torch.Tensor, packed: torch.Tensor, gamma: float, in_features: int,
                   bias: torch.Tensor | None = None, act_bits: int = 8, variant: str | None = None) -> torch.Tensor:
    """y = int8(x) @ ternary(W).T * gamma / s + bias from kernel-layout packed weights; fp32 in and out.

    Convenience for one-off calls; layers that run repeatedly keep a ``TernaryMatmul``.
    """
    return TernaryMatmul(packed, gamma, in_features, bias, act_bits, variant)(x)


if __name__ == "__main__":
    print(kernel_description())
