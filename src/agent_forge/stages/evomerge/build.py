"""Turn a recipe into weights and a model, entirely in memory.

`RecipeBuilder` holds the base and specialists' state dicts once, and for each recipe runs the interpolation,
the task-vector merge and the layer-space step, returning `(state_dict, config)`; `model(recipe)` loads them
into a cached skeleton of the right depth, so evaluating a candidate costs a merge and a copy, not a disk
round trip or a model construction. Exercise: `python -m pytest tests/stages/evomerge/test_build.py`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ...errors import ForgeError
from .dfs import dfs_merge
from .frankenmerge import frankenmerge
from .groups import LayerGrouping
from .methods import check_same_layout, merge_state_dicts
from .recipe import Recipe
from .space import SearchSpace
from .stacking import instantiate

StateDict = Mapping[str, torch.Tensor]


def mergeable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, detached, without the tied output head (it is the embedding, merged once)."""
    tied = getattr(model.config, "tie_word_embeddings", False)
    return {k: v.detach() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}


def check_finite(sd: StateDict, label: str) -> None:
    """ForgeError naming the first tensor holding NaN or inf (inputs are checked once, before any merging)."""
    for name, tensor in sd.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ForgeError(f"{label} has non-finite values in {name}; it cannot be merged")


class RecipeBuilder:
    """Builds candidate models from recipes over one base and a fixed list of specialists."""

    def __init__(self, base: StateDict, specialists: Sequence[StateDict], config, space: SearchSpace,
                 grouping: LayerGrouping, labels: Sequence[str] | None = None, device: str | torch.device = "cpu"):
        labels = list(labels) if labels is not None else [f"specialist {i}" for i in range(len(specialists))]
        check_same_layout([base, *specialists], ["base", *labels])
        for sd, label in zip([base, *specialists], ["base", *labels]):
            check_finite(sd, label)
        if len(specialists) != space.num_models:
            raise ForgeError(f"search space expects {space.num_models} specialists, got {len(specialists)}")
        self.base = dict(base)
        self.specialists = [dict(sd) for sd in specialists]
        self.config = config
        self.space = space
        self.grouping = grouping
        self.device = torch.device(device)
        self._skeletons: dict[tuple, torch.nn.Module] = {}

    def parameter_space(self, recipe: Recipe) -> dict[str, torch.Tensor]:
        """The state dict after the interpolation and task-vector steps."""
        merged = None
        if recipe.interp is not None:
            merged = merge_state_dicts(recipe.interp.method, self.specialists, recipe.interp.params, self.grouping,
                                       seed=recipe.seed)
        if recipe.vector is not None:
            inputs = ([merged] if merged is not None else []) + self.specialists
            merged = merge_state_dicts(recipe.vector.method, inputs, recipe.vector.params, self.grouping,
                                       base=self.base, seed=recipe.seed)
        return merged

    def state_dict(self, recipe: Recipe) -> tuple[dict[str, torch.Tensor], object]:
        """(weights, config) of the recipe's model."""
        self.space.validate(recipe)
        merged = self.parameter_space(recipe)
        layer = recipe.layer
        if layer is None:
            return merged, self.config
        pool = [merged, *self.specialists]
        if layer.kind == "frankenmerge":
            return frankenmerge(pool, self.config, layer.slices())
        return dfs_merge(pool, self.config, self.space.dfs_repeats, layer.indicator, layer.scales)

    def model(self, recipe: Recipe) -> torch.nn.Module:
        """The recipe's model in a reused skeleton: valid until the next call (copy it to keep it)."""
        sd, config = self.state_dict(recipe)
        # per-layer config lists (e.g. attention types) are part of the architecture, not just the depth
        shape = (config.num_hidden_layers, tuple(getattr(config, "layer_types", None) or ()))
        skeleton = self._skeletons.get(shape)
        if skeleton is None:
            skeleton = self._skeletons[shape] = instantiate(config, sd).to(self.device)
            return skeleton
        skeleton.load_state_dict(sd, strict=False)
        return skeleton

    def fresh_model(self, recipe: Recipe) -> torch.nn.Module:
        """A new model object of the recipe, independent of the builder (for saving)."""
        sd, config = self.state_dict(recipe)
        return instantiate(config, sd)
