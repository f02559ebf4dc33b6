"""Frankenmerge (passthrough stacking): a model built from layer ranges of several models, depth free.

A recipe's slices are `(source, start, end)` with `end` exclusive, taken in order; embeddings and head come from
the primary source (index 0: the parameter-space merge when the recipe has one). The result is an ordinary
model of the same family with `num_hidden_layers = sum(end - start)`. Exercise:
`python -m pytest tests/stages/evomerge/test_layerspace.py -k frankenmerge`.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ForgeError
from .stacking import LayerRef, StateDict, stack_layers

Slice = tuple[int, int, int]


def frankenmerge_path(slices: Sequence[Slice]) -> list[LayerRef]:
    """The layer path that stacks `slices` in order."""
    path = []
    for source, start, end in slices:
        if end <= start:
            raise ForgeError(f"frankenmerge slice ({source}, {start}, {end}) is empty; end must exceed start")
        path.extend(LayerRef(int(source), layer) for layer in range(int(start), int(end)))
    return path


def frankenmerge(sources: Sequence[StateDict], primary_config, slices: Sequence[Slice]):
    """(state_dict, config) of the stacked model; sources[0] provides embeddings and head."""
    return stack_layers(sources[0], primary_config, sources, frankenmerge_path(slices))
