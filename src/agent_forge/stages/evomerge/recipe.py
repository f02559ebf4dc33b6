"""The genome of the evolution: a merge recipe, serialisable to JSON and buildable into a model.

A recipe has up to three steps, applied in order:
  - `interp`: an interpolation of the specialists (linear or SLERP), parameters per input and layer group;
  - `vector`: a task-vector merge against the shared base (task arithmetic, TIES, DARE-TIES, DARE-linear) of
    the specialists, and of the interpolation's result as one more input (row 0) when `interp` is present;
  - `layer`: an optional layer-space step over the pool [parameter-space result, specialist 1, ..., n]:
    a Frankenmerge (slices) or a DFS path (indicator and scale per slot).
At least one parameter-space step is present. `seed` drives DARE's random masks, so a recipe is reproducible.
`space.SearchSpace` says which shapes a recipe must have for the models at hand. Exercise: `python -m pytest tests/stages/evomerge/test_recipe.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np




@dataclass
class ParamStep:
    """A parameter-space merge: method name and its parameters, each an array [rows, layer groups]."""

    method: str
    params: dict[str, np.ndarray]

    def to_json(self) -> dict:
        return {"method": self.method, "params": {k: v.tolist() for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, obj: dict) -> "ParamStep":
        return cls(obj["method"], {k: np.asarray(v, dtype=np.float64) for k, v in obj["params"].items()})


@dataclass
class LayerStep:
    """A layer-space merge: `frankenmerge` with `layers` [(source, layer), ...], or `dfs` with indicator/scales."""

    kind: Literal["frankenmerge", "dfs"]
    layers: list[tuple[int, int]] = field(default_factory=list)
    indicator: list[bool] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)

    def slices(self) -> list[tuple[int, int, int]]:
        """The Frankenmerge layer list as (source, start, end) runs, the form mergekit configs use."""
        runs: list[list[int]] = []
        for source, layer in self.layers:
            if runs and runs[-1][0] == source and runs[-1][2] == layer:
                runs[-1][2] += 1
            else:
                runs.append([source, layer, layer + 1])
        return [tuple(r) for r in runs]

    def to_json(self) -> dict:
        if self.kind == "frankenmerge":
            return {"kind": self.kind, "slices": [list(s) for s in self.slices()]}
        return {"kind": self.kind, "indicator": [int(b) for b in self.indicator], "scales": list(map(float, self.scales))}

    @classmethod
    def from_json(cls, obj: dict) -> "LayerStep":
        if obj["kind"] == "frankenmerge":
            layers = [(int(s), layer) for s, a, b in obj["slices"] for layer in range(int(a), int(b))]
            return cls("frankenmerge", layers=layers)
        return cls("dfs", indicator=[bool(b) for b in obj["indicator"]], scales=[float(x) for x in obj["scales"]])


@dataclass
class Recipe:
    """One candidate merge; see the module docstring."""

    interp: ParamStep | None = None
    vector: ParamStep | None = None
    layer: LayerStep | None = None
    seed: int = 0

    def to_json(self) -> dict:
        return {
            "interp": self.interp.to_json() if self.interp else None,
            "vector": self.vector.to_json() if self.vector else None,
            "layer": self.layer.to_json() if self.layer else None,
            "seed": int(self.seed),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "Recipe":
        return cls(
            interp=ParamStep.from_json(obj["interp"]) if obj.get("interp") else None,
            vector=ParamStep.from_json(obj["vector"]) if obj.get("vector") else None,
            layer=LayerStep.from_json(obj["layer"]) if obj.get("layer") else None,
            seed=int(obj.get("seed", 0)),
        )

    def key(self) -> str:
        """A canonical string: equal recipes build equal models (used to cache fitness)."""
        return json.dumps(self.to_json(), sort_keys=True)

    def label(self) -> str:
        """Short name such as `linear+ties+dfs`."""
        parts = [s.method for s in (self.interp, self.vector) if s] + ([self.layer.kind] if self.layer else [])
        return "+".join(parts)

    def copy(self) -> "Recipe":
        return Recipe.from_json(self.to_json())


def describe(recipe: Recipe, group_labels: list[str]) -> dict[str, Any]:
    """The recipe with each parameter row keyed by layer-group label, for metrics a person reads."""
    out = recipe.to_json()
    for name in ("interp", "vector"):
        step = out[name]
        if step:
            step["params"] = {p: [dict(zip(group_labels, map(lambda x: round(x, 4), row))) for row in rows]
                              for p, rows in step["params"].items()}
    return out
