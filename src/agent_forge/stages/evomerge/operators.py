"""Variation operators on recipes: Gaussian mutation, method flips, structure toggles, path edits, crossover.

All randomness comes from the numpy Generator passed in, so a run is reproducible for a seed. Operators
return new recipes and never modify their inputs. `features` turns a recipe into a fixed-length vector for
the population diversity measure. Exercise: `python -m pytest tests/stages/evomerge/test_recipe.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .methods import MERGE_METHODS
from .methods.slerp import linear_weights_to_chain_t
from .recipe import LayerStep, ParamStep, Recipe

if TYPE_CHECKING:
    from .space import SearchSpace


@dataclass(frozen=True)
class MutationRates:
    """How often each kind of variation happens (probabilities per child; `sigma` relative to a range)."""

    sigma: float = 0.08
    gene_rate: float = 0.35
    method_flip: float = 0.1
    structure_flip: float = 0.05
    path_edit: float = 0.3
    reseed: float = 0.1


# ---- parameter conversions used by method flips ----------------------------------------------------------
def chain_t_to_linear_weights(ts: np.ndarray) -> np.ndarray:
    """Inverse of `linear_weights_to_chain_t` per group: rows [n-1, G] of t -> rows [n, G] of weights (sum 1)."""
    n = ts.shape[0] + 1
    weights = np.ones((n, ts.shape[1]))
    for i in range(n):
        if i > 0:
            weights[i] *= ts[i - 1]
        for j in range(i + 1 if i > 0 else 1, n):
            weights[i] *= 1.0 - ts[j - 1]
    return weights


def convert_step(step: ParamStep, method: str, space: "SearchSpace", with_interp: bool) -> ParamStep:
    """The same step under another method of its kind, keeping whatever parameters carry over."""
    new = space.default_step(method, with_interp)
    if step.method == "linear" and method == "slerp":
        w = np.clip(step.params["weight"], 1e-6, None)
        new.params["t"] = np.stack([linear_weights_to_chain_t(w[:, g]) for g in range(w.shape[1])], axis=1)
    elif step.method == "slerp" and method == "linear":
        new.params["weight"] = np.clip(chain_t_to_linear_weights(step.params["t"]), 0.0, 1.0)
    else:
        for pname in new.params:
            if pname in step.params and step.params[pname].shape == new.params[pname].shape:
                new.params[pname] = step.params[pname].copy()
    return new


def _clip_step(step: ParamStep) -> None:
    for pname, arr in step.params.items():
        spec = MERGE_METHODS[step.method].params[pname]
        np.clip(arr, spec.low, spec.high, out=arr)
    if step.method == "linear":  # a normalised average needs some weight somewhere in each group
        dead = step.params["weight"].sum(axis=0) < 1e-3
        step.params["weight"][:, dead] = 1.0


def repair(recipe: Recipe, space: "SearchSpace") -> Recipe:
    """Bring parameters back into range and path lengths into [1, max_depth] (in place; returns it)."""
    for step in (recipe.interp, recipe.vector):
        if step is not None:
            _clip_step(step)
    layer = recipe.layer
    if layer is not None and layer.kind == "frankenmerge":
        layer.layers = layer.layers[: space.max_depth] or [(0, 0)]
    elif layer is not None and layer.kind == "dfs":
        low, high = space.dfs_scale_range
        layer.scales = [float(np.clip(s, low, high)) for s in layer.scales]
        on = [i for i, b in enumerate(layer.indicator) if b]
        for i in on[space.max_depth:]:
            layer.indicator[i] = False
        if not on:
            layer.indicator[0] = True
    return recipe


# ---- path edits --------------------------------------------------------------------------------------------
def edit_layer_step(layer: LayerStep, space: "SearchSpace", rng: np.random.Generator) -> LayerStep:
    """One small edit of a layer path: for Frankenmerge change a layer's source, shift, insert or delete a layer;
    for DFS switch one slot on or off."""
    if layer.kind == "dfs":
        indicator = list(layer.indicator)
        depth = sum(indicator)
        candidates = [i for i, b in enumerate(indicator) if (b and depth > 1) or (not b and depth < space.max_depth)]
        slot = int(rng.choice(candidates))
        indicator[slot] = not indicator[slot]
        return LayerStep("dfs", indicator=indicator, scales=list(layer.scales))
    layers = list(layer.layers)
    ops = ["source", "shift"] + (["insert"] if len(layers) < space.max_depth else []) + (["delete"] if len(layers) > 1 else [])
    op = str(rng.choice(ops))
    pos = int(rng.integers(len(layers)))
    source, index = layers[pos]
    if op == "source":
        others = [s for s in range(space.num_models + 1) if s != source]
        layers[pos] = (int(rng.choice(others)), index)
    elif op == "shift":
        step = int(rng.choice([-1, 1]))
        layers[pos] = (source, int(np.clip(index + step, 0, space.num_layers - 1)))
    elif op == "insert":
        layers.insert(pos + 1, (int(rng.integers(space.num_models + 1)), index))
    else:
        del layers[pos]
    return LayerStep("frankenmerge", layers=layers)


# ---- mutation ---------------------------------------------------------------------------------------------
def _gaussian(step: ParamStep, rates: MutationRates, rng: np.random.Generator) -> None:
    for pname, arr in step.params.items():
        spec = MERGE_METHODS[step.method].params[pname]
        mask = rng.random(arr.shape) < rates.gene_rate
        arr += mask * rng.normal(0.0, rates.sigma * (spec.high - spec.low), size=arr.shape)


def _toggle_structure(child: Recipe, space: "SearchSpace", rng: np.random.Generator) -> None:
    options = []
    if space.interp_methods and (child.interp is None or child.vector is not None):
        options.append("interp")
    if space.vector_methods and (child.vector is None or child.interp is not None):
        options.append("vector")
    if space.layer_kinds:
        options.append("layer")
    what = str(rng.choice(options))
    if what == "interp":
        if child.interp is None:
            child.interp = space.default_step(str(rng.choice(space.interp_methods)), False)
            if child.vector is not None:  # the new row weighs the interpolation 0: the child starts where it was
                child.vector = _with_interp_row(child.vector, space, 0.0)
        else:
            child.interp = None
            child.vector = ParamStep(child.vector.method, {p: a[1:].copy() for p, a in child.vector.params.items()})
    elif what == "vector":
        if child.vector is None:
            vector = space.default_step(str(rng.choice(space.vector_methods)), True)
            vector.params["weight"][:] = 0.0
            vector.params["weight"][0] = 1.0  # base + 1 * (interp - base): starts equal to the interpolation
            child.vector = vector
        else:
            child.vector = None
    else:
        if child.layer is None:
            child.layer = edit_layer_step(space.identity_layer_step(str(rng.choice(space.layer_kinds))), space, rng)
        else:
            child.layer = None


def _with_interp_row(step: ParamStep, space: "SearchSpace", weight: float) -> ParamStep:
    new = space.default_step(step.method, True)
    for pname, arr in new.params.items():
        arr[1:] = step.params[pname]
    new.params["weight"][0] = weight
    return new


def mutate(recipe: Recipe, space: "SearchSpace", rng: np.random.Generator, rates: MutationRates) -> Recipe:
    """A mutated copy: Gaussian noise on continuous genes, and with small probabilities a method flip, a structure
    toggle (adding/removing a step in a way that starts from the parent's behaviour), a path edit, a new DARE seed."""
    child = recipe.copy()
    for step in (child.interp, child.vector):
        if step is not None:
            _gaussian(step, rates, rng)
    if child.layer is not None and child.layer.kind == "dfs":
        low, high = space.dfs_scale_range
        mask = rng.random(len(child.layer.scales)) < rates.gene_rate
        noise = rng.normal(0.0, rates.sigma * (high - low), size=len(child.layer.scales))
        child.layer.scales = [s + float(m * z) for s, m, z in zip(child.layer.scales, mask, noise)]
    if rng.random() < rates.method_flip:
        steps = [name for name in ("interp", "vector") if getattr(child, name) is not None]
        name = str(rng.choice(steps))
        step = getattr(child, name)
        pool = space.interp_methods if name == "interp" else space.vector_methods
        others = [m for m in pool if m != step.method]
        if others:
            setattr(child, name, convert_step(step, str(rng.choice(others)), space, child.interp is not None))
    if rng.random() < rates.structure_flip:
        _toggle_structure(child, space, rng)
    if child.layer is not None and rng.random() < rates.path_edit:
        child.layer = edit_layer_step(child.layer, space, rng)
    if rng.random() < rates.reseed:
        child.seed = int(rng.integers(2**31))
    return repair(child, space)


# ---- crossover --------------------------------------------------------------------------------------------
def _cross_step(a: ParamStep | None, b: ParamStep | None, rng: np.random.Generator) -> ParamStep | None:
    if a is None or b is None or a.method != b.method or any(a.params[p].shape != b.params[p].shape for p in a.params):
        return None if a is None else ParamStep(a.method, {p: v.copy() for p, v in a.params.items()})
    take_b = rng.random(next(iter(a.params.values())).shape[1]) < 0.5  # whole layer groups travel together
    return ParamStep(a.method, {p: np.where(take_b[None, :], b.params[p], a.params[p]) for p in a.params})


def crossover(a: Recipe, b: Recipe, space: "SearchSpace", rng: np.random.Generator) -> Recipe:
    """A child with `a`'s structure; where both parents use the same method, each layer group's parameters come
    from either parent; matching layer steps mix slot by slot (DFS) or by one-point crossover (Frankenmerge)."""
    child = Recipe(_cross_step(a.interp, b.interp, rng), _cross_step(a.vector, b.vector, rng), None,
                   seed=a.seed if rng.random() < 0.5 else b.seed)
    la, lb = a.layer, b.layer
    if la is not None and lb is not None and la.kind == lb.kind == "dfs":
        take_b = rng.random(len(la.indicator)) < 0.5
        child.layer = LayerStep("dfs", indicator=[y if t else x for x, y, t in zip(la.indicator, lb.indicator, take_b)],
                                scales=[y if t else x for x, y, t in zip(la.scales, lb.scales, take_b)])
    elif la is not None and lb is not None and la.kind == lb.kind == "frankenmerge":
        i, j = int(rng.integers(len(la.layers) + 1)), int(rng.integers(len(lb.layers) + 1))
        child.layer = LayerStep("frankenmerge", layers=la.layers[:i] + lb.layers[j:])
    elif la is not None:
        child.layer = LayerStep.from_json(la.to_json())
    return repair(child, space)


# ---- diversity ---------------------------------------------------------------------------------------------
def features(recipe: Recipe, space: "SearchSpace") -> np.ndarray:
    """Fixed-length description of a recipe: which methods, their parameters scaled to [0, 1], path shape."""
    parts: list[np.ndarray] = []
    for name, pool in (("interp", space.interp_methods), ("vector", space.vector_methods)):
        step = getattr(recipe, name)
        parts.append(np.array([float(step is not None and step.method == m) for m in pool]))
        for method in pool:
            for pname, spec in MERGE_METHODS[method].params.items():
                rows = space.rows(method, pname, True)
                block = np.zeros((rows, space.num_groups))
                if step is not None and step.method == method:
                    arr = (step.params[pname] - spec.low) / (spec.high - spec.low)
                    block[rows - arr.shape[0]:] = arr
                parts.append(block.ravel())
    layer = recipe.layer
    parts.append(np.array([float(layer is not None and layer.kind == k) for k in space.layer_kinds]))
    slots = np.zeros(space.num_slots)
    if layer is not None and layer.kind == "dfs":
        slots = np.asarray(layer.indicator, dtype=float)
    depth = len(layer.layers) if layer is not None and layer.kind == "frankenmerge" else 0
    parts.extend([slots, np.array([depth / space.max_depth])])
    return np.concatenate(parts)


def diversity(recipes: list[Recipe], space: "SearchSpace") -> float:
    """Mean pairwise Euclidean distance between recipe feature vectors (0 when all recipes are equal)."""
    if len(recipes) < 2:
        return 0.0
    x = np.stack([features(r, space) for r in recipes])
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    n = len(recipes)
    return float(distances.sum() / (n * (n - 1)))
