"""The registry of parameter-space merge methods and the driver that applies one to whole state dicts.

`MERGE_METHODS` maps a method name to a `MergeMethod`: its kind ("interpolation" merges the models
themselves; "task_vector" merges their differences from a shared base), the parameters a recipe sets for
every input and layer group (with their search ranges), and the per-tensor function.
`merge_state_dicts(name, inputs, params, grouping, base=..., seed=...)` merges in memory, tensor by tensor,
refusing mismatched inputs up front and any non-finite result. Exercise:
`python -m pytest tests/stages/evomerge/test_methods.py`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from ....errors import ForgeError
from ..groups import LayerGrouping
from .linear import linear
from .slerp import slerp_chain
from .task_vectors import dare_linear, dare_ties, task_arithmetic, ties

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ParamSpec:
    """A recipe parameter: its search range, its default, and whether it has one value per input or per link."""

    low: float
    high: float
    default: float
    per: Literal["input", "link"] = "input"

    def count(self, num_inputs: int) -> int:
        return num_inputs if self.per == "input" else num_inputs - 1


TensorFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """One parameter-space merge method as the evolution sees it."""

    name: str
    kind: Literal["interpolation", "task_vector"]
    params: dict[str, ParamSpec]
    tensor_fn: TensorFn  # (base, tensors, values: dict[str, list[float]], generator, **options) -> Tensor
    random: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_base(self) -> bool:
        return self.kind == "task_vector"


def _linear(base, tensors, values, generator, normalize=True):
    return linear(tensors, values["weight"], normalize=normalize)


def _slerp(base, tensors, values, generator, dot_threshold=0.9995):
    return slerp_chain(tensors, values["t"], dot_threshold=dot_threshold)


def _task_arithmetic(base, tensors, values, generator, lam=1.0, normalize=False):
    return task_arithmetic(base, tensors, values["weight"], lam=lam, normalize=normalize)


def _ties(base, tensors, values, generator, lam=1.0, normalize=True, rescale=False):
    return ties(base, tensors, values["weight"], values["density"], lam=lam, normalize=normalize, rescale=rescale)


def _dare_ties(base, tensors, values, generator, lam=1.0, normalize=False, rescale=True):
    return dare_ties(base, tensors, values["weight"], values["density"], generator=generator, lam=lam,
                     normalize=normalize, rescale=rescale)


def _dare_linear(base, tensors, values, generator, lam=1.0, normalize=False, rescale=True):
    return dare_linear(base, tensors, values["weight"], values["density"], generator=generator, lam=lam,
                       normalize=normalize, rescale=rescale)


# Task-vector weights may exceed 1: the trial found that scaling every task vector down (a uniform average)
# erases the new skills, while weights near 1 per skill and layer group keep them.
_TV_WEIGHT = ParamSpec(-0.5, 2.0, 1.0)
_DENSITY = ParamSpec(0.05, 1.0, 0.7)

MERGE_METHODS: dict[str, MergeMethod] = {
    "linear": MergeMethod("linear", "interpolation", {"weight": ParamSpec(0.0, 1.0, 1.0)}, _linear),
    "slerp": MergeMethod("slerp", "interpolation", {"t": ParamSpec(0.0, 1.0, 0.5, per="link")}, _slerp),
    "task_arithmetic": MergeMethod("task_arithmetic", "task_vector", {"weight": _TV_WEIGHT}, _task_arithmetic),
    "ties": MergeMethod("ties", "task_vector", {"weight": _TV_WEIGHT, "density": _DENSITY}, _ties),
    "dare_ties": MergeMethod("dare_ties", "task_vector", {"weight": _TV_WEIGHT, "density": _DENSITY}, _dare_ties,
                             random=True),
    "dare_linear": MergeMethod("dare_linear", "task_vector", {"weight": _TV_WEIGHT, "density": _DENSITY},
                               _dare_linear, random=True),
}


def get_method(name: str) -> MergeMethod:
    try:
        return MERGE_METHODS[name]
    except KeyError:
        raise ForgeError(f"unknown merge method {name!r}; known: {sorted(MERGE_METHODS)}") from None


def tensor_seed(seed: int, name: str) -> int:
    """A per-tensor seed, so random masks do not depend on the order tensors are visited in."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def check_same_layout(inputs: Sequence[StateDict], labels: Sequence[str] | None = None) -> None:
    """ForgeError unless every state dict has the same tensor names and shapes as the first."""
    labels = list(labels) if labels is not None else [f"input {i}" for i in range(len(inputs))]
    ref = inputs[0]
    for label, sd in zip(labels[1:], inputs[1:]):
        if sd.keys() != ref.keys():
            missing = sorted(set(ref) - set(sd))[:3]
            extra = sorted(set(sd) - set(ref))[:3]
            raise ForgeError(f"cannot merge {labels[0]} with {label}: different tensors (missing {missing}, extra {extra})")
        for key, tensor in ref.items():
            if sd[key].shape != tensor.shape:
                raise ForgeError(f"cannot merge {labels[0]} with {label}: {key} has shape {list(sd[key].shape)} "
                                 f"vs {list(tensor.shape)}")


def _group_values(method: MergeMethod, params: Mapping[str, Any], num_inputs: int, num_groups: int) -> dict[str, np.ndarray]:
    """Each parameter as an array [count, num_groups]; scalars and per-input vectors are broadcast over groups."""
    out = {}
    for pname, spec in method.params.items():
        count = spec.count(num_inputs)
        raw = params.get(pname, spec.default)
        arr = np.asarray(raw, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full((count, num_groups), float(arr))
        elif arr.ndim == 1:
            if arr.shape[0] != count:
                raise ForgeError(f"{method.name}.{pname} needs {count} values (one per {spec.per}), got {arr.shape[0]}")
            arr = np.repeat(arr[:, None], num_groups, axis=1)
        if arr.shape != (count, num_groups):
            raise ForgeError(f"{method.name}.{pname} must have shape {(count, num_groups)}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ForgeError(f"{method.name}.{pname} has non-finite values")
        out[pname] = arr
    unknown = set(params) - set(method.params)
    if unknown:
        raise ForgeError(f"{method.name} has no parameter(s) {sorted(unknown)}; it takes {sorted(method.params)}")
    return out


def merge_state_dicts(
    method: str,
    inputs: Sequence[StateDict],
    params: Mapping[str, Any],
    grouping: LayerGrouping,
    *,
    base: StateDict | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Merge `inputs` tensor by tensor; `params[name]` is an array [per-input or per-link, num_groups]."""
    spec = get_method(method)
    if not inputs:
        raise ForgeError("a merge needs at least one input model")
    if spec.needs_base and base is None:
        raise ForgeError(f"{method} merges task vectors and needs a base model")
    if method == "slerp" and len(inputs) < 2:
        raise ForgeError("slerp needs at least two input models")
    check_same_layout([base, *inputs] if base is not None else list(inputs))
    values = _group_values(spec, params, len(inputs), grouping.num_groups)
    opts = dict(spec.options, **(options or {}))
    merged: dict[str, torch.Tensor] = {}
    for name, first in inputs[0].items():
        tensors = [sd[name] for sd in inputs]
        if not first.is_floating_point():
            if any(not torch.equal(first, t) for t in tensors[1:]):
                raise ForgeError(f"cannot merge non-float tensor {name}: the inputs disagree")
            merged[name] = first.clone()
            continue
        g = grouping.group_of(name)
        per_tensor = {pname: arr[:, g].tolist() for pname, arr in values.items()}
        generator = torch.Generator().manual_seed(tensor_seed(seed, name)) if spec.random else None
        result = spec.tensor_fn(base[name] if base is not None else None, tensors, per_tensor, generator, **opts)
        # a float64 sum is NaN/inf iff some entry is (no overflow at weight scales) and needs no mask tensor
        if not math.isfinite(float(result.sum(dtype=torch.float64))):
            raise ForgeError(f"{method} merge produced non-finite values in {name} (check the inputs and parameters)")
        merged[name] = result
    return merged
