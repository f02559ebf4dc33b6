"""The search space: which recipes fit the models at hand, and the recipes an evolution starts from.

`SearchSpace` knows the number of specialists, their depth, the layer groups and the DFS repeats, so it can
create default, random and seed recipes (the original design's eight combinations {linear, SLERP} x
{TIES, DARE} x {Frankenmerge, DFS}) and refuse a recipe whose shapes do not fit. Exercise:
`python -m pytest tests/stages/evomerge/test_recipe.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ForgeError
from .dfs import identity_indicator, slot_layers
from .methods import MERGE_METHODS, MergeMethod, ParamSpec
from .operators import edit_layer_step
from .recipe import LayerStep, ParamStep, Recipe

INTERP_METHODS = ("linear", "slerp")
VECTOR_METHODS = ("task_arithmetic", "ties", "dare_ties", "dare_linear")
LAYER_KINDS = ("frankenmerge", "dfs")


@dataclass(frozen=True)
class SearchSpace:
    """What recipes for these models look like: model count, depth, layer groups, DFS repeats, depth limit."""

    num_models: int
    num_layers: int
    num_groups: int
    dfs_repeats: int = 2
    max_depth_factor: float = 1.5
    dfs_scale_range: tuple[float, float] = (0.7, 1.4)
    interp_methods: tuple[str, ...] = INTERP_METHODS
    vector_methods: tuple[str, ...] = VECTOR_METHODS
    layer_kinds: tuple[str, ...] = LAYER_KINDS

    def __post_init__(self):
        if self.num_models < 2:
            raise ForgeError(f"evomerge needs at least two specialists, got {self.num_models}")
        for name in (*self.interp_methods, *self.vector_methods):
            if name not in MERGE_METHODS:
                raise ForgeError(f"unknown merge method {name!r}; known: {sorted(MERGE_METHODS)}")
        if not self.interp_methods and not self.vector_methods:
            raise ForgeError("evomerge needs at least one parameter-space merge method")

    @property
    def max_depth(self) -> int:
        return max(1, int(round(self.num_layers * self.max_depth_factor)))

    @property
    def depths(self) -> list[int]:
        """Layer counts of the layer-space pool: the parameter-space result and each specialist."""
        return [self.num_layers] * (self.num_models + 1)

    @property
    def num_slots(self) -> int:
        return len(slot_layers(self.depths, self.dfs_repeats))

    def rows(self, method: str, pname: str, with_interp: bool) -> int:
        inputs = self.num_models + (1 if with_interp and MERGE_METHODS[method].kind == "task_vector" else 0)
        return MERGE_METHODS[method].params[pname].count(inputs)

    # ---- construction -------------------------------------------------------------------------------
    def default_step(self, method: str, with_interp: bool) -> ParamStep:
        spec = MERGE_METHODS[method]
        params = {p: np.full((self.rows(method, p, with_interp), self.num_groups), s.default)
                  for p, s in spec.params.items()}
        if method == "slerp":  # chain t_k = 1/(k+2) makes every specialist weigh the same
            for k in range(params["t"].shape[0]):
                params["t"][k, :] = 1.0 / (k + 2)
        return ParamStep(method, params)

    def random_step(self, method: str, with_interp: bool, rng: np.random.Generator) -> ParamStep:
        step = self.default_step(method, with_interp)
        for pname, arr in step.params.items():
            spec: ParamSpec = MERGE_METHODS[method].params[pname]
            noise = rng.normal(0.0, 0.2 * (spec.high - spec.low), size=arr.shape)
            step.params[pname] = np.clip(arr + noise, spec.low, spec.high)
        return step

    def identity_layer_step(self, kind: str) -> LayerStep:
        if kind == "frankenmerge":
            return LayerStep("frankenmerge", layers=[(0, i) for i in range(self.num_layers)])
        return LayerStep("dfs", indicator=identity_indicator(self.depths, self.dfs_repeats),
                         scales=[1.0] * self.num_slots)

    def seed_recipes(self, rng: np.random.Generator) -> list[Recipe]:
        """The original design's eight starting combinations (those the allowed methods permit)."""
        recipes = []
        interps = [m for m in ("linear", "slerp") if m in self.interp_methods]
        vectors = [m for m in ("ties", "dare_ties") if m in self.vector_methods]
        kinds = [k for k in ("frankenmerge", "dfs") if k in self.layer_kinds]
        for interp in interps:
            for vector in vectors:
                for kind in kinds:
                    # a layer step that changes nothing would duplicate its sibling; one edit makes it distinct
                    layer = edit_layer_step(self.identity_layer_step(kind), self, rng)
                    recipes.append(Recipe(self.default_step(interp, False), self.default_step(vector, True), layer,
                                          seed=int(rng.integers(2**31))))
        return recipes

    def random_recipe(self, rng: np.random.Generator) -> Recipe:
        choice = rng.random()
        interp = vector = None
        if self.interp_methods and (choice < 0.3 or not self.vector_methods):
            interp = self.random_step(str(rng.choice(self.interp_methods)), False, rng)
        if self.vector_methods and (interp is None or choice < 0.45):
            vector = self.random_step(str(rng.choice(self.vector_methods)), interp is not None, rng)
        layer = None
        if self.layer_kinds and rng.random() < 0.3:
            layer = edit_layer_step(self.identity_layer_step(str(rng.choice(self.layer_kinds))), self, rng)
        return Recipe(interp, vector, layer, seed=int(rng.integers(2**31)))

    # ---- checking ------------------------------------------------------------------------------------
    def validate(self, recipe: Recipe) -> None:
        """ForgeError if the recipe does not fit these models (wrong shapes, unknown methods, bad paths)."""
        if recipe.interp is None and recipe.vector is None:
            raise ForgeError("a recipe needs a parameter-space step (interp or vector)")
        for step, allowed in ((recipe.interp, INTERP_METHODS), (recipe.vector, VECTOR_METHODS)):
            if step is None:
                continue
            if step.method not in allowed:
                raise ForgeError(f"{step.method!r} cannot be used here; expected one of {allowed}")
            spec: MergeMethod = MERGE_METHODS[step.method]
            if set(step.params) != set(spec.params):
                raise ForgeError(f"{step.method} takes parameters {sorted(spec.params)}, got {sorted(step.params)}")
            for pname, arr in step.params.items():
                rows = self.rows(step.method, pname, recipe.interp is not None)
                if arr.shape != (rows, self.num_groups):
                    raise ForgeError(f"{step.method}.{pname} must have shape {(rows, self.num_groups)}, got {arr.shape}")
        layer = recipe.layer
        if layer is not None:
            if layer.kind == "frankenmerge":
                if not 1 <= len(layer.layers) <= self.max_depth:
                    raise ForgeError(f"frankenmerge depth must be 1..{self.max_depth}, got {len(layer.layers)}")
                for source, index in layer.layers:
                    if not (0 <= source <= self.num_models and 0 <= index < self.num_layers):
                        raise ForgeError(f"frankenmerge layer ({source}, {index}) is outside the model pool")
            elif layer.kind == "dfs":
                if len(layer.indicator) != self.num_slots or len(layer.scales) != self.num_slots:
                    raise ForgeError(f"DFS needs {self.num_slots} slots, got {len(layer.indicator)}")
                if not 1 <= sum(layer.indicator) <= self.max_depth:
                    raise ForgeError(f"DFS path length must be 1..{self.max_depth}, got {sum(layer.indicator)}")
            else:
                raise ForgeError(f"unknown layer-space step {layer.kind!r}; expected one of {LAYER_KINDS}")
