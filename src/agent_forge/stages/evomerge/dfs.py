"""DFS merge (data-flow space, Akiba et al. 2024, "Evolutionary Optimization of Model Merging Recipes").

The layers of the source models, concatenated in order (source 0's layers, then source 1's, ...), form a
sequence of M layers; repeating it r times gives T = M x r slots. An indicator per slot says whether the
hidden state passes through that slot's layer; the path is the included slots in order. Each slot also has a
scale: the hidden state entering that layer is multiplied by it (the paper's scaling between consecutive
layers, kept here per slot rather than per (from, to) pair so it stays put when the path around it is edited).
Embeddings and head are those of source 0.

How it is stored: as an ordinary model of the source family (for example LlamaForCausalLM) whose layers are
copies of the path's layers, with each scale folded into the weights (see `stacking`), so every later stage
loads and trains it with plain transformers. Exercise: `python -m pytest tests/stages/evomerge/test_layerspace.py -k dfs`.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ForgeError
from .stacking import LayerRef, StateDict, num_layers_of, stack_layers


def slot_layers(depths: Sequence[int], repeats: int) -> list[tuple[int, int]]:
    """(source, layer) of every slot, in path order."""
    one_pass = [(source, layer) for source, depth in enumerate(depths) for layer in range(depth)]
    return one_pass * repeats


def dfs_path(depths: Sequence[int], repeats: int, indicator: Sequence[bool], scales: Sequence[float]) -> list[LayerRef]:
    """The layer path selected by `indicator`, each layer entered with its slot's scale."""
    slots = slot_layers(depths, repeats)
    if len(indicator) != len(slots) or len(scales) != len(slots):
        raise ForgeError(f"DFS needs {len(slots)} indicator and scale values (layers {sum(depths)} x r {repeats}), "
                         f"got {len(indicator)} and {len(scales)}")
    path = [LayerRef(src, layer, float(scale)) for (src, layer), on, scale in zip(slots, indicator, scales) if on]
    if not path:
        raise ForgeError("a DFS path must pass through at least one layer")
    return path


def identity_indicator(depths: Sequence[int], repeats: int) -> list[bool]:
    """The indicator whose path is source 0's own layers once: the DFS merge that changes nothing."""
    return [src == 0 and slot < depths[0] for slot, (src, _) in enumerate(slot_layers(depths, repeats))]


def dfs_merge(sources: Sequence[StateDict], primary_config, repeats: int, indicator: Sequence[bool],
              scales: Sequence[float]):
    """(state_dict, config) of the plain model that computes the DFS path."""
    depths = [num_layers_of(sd) for sd in sources]
    return stack_layers(sources[0], primary_config, sources, dfs_path(depths, repeats, indicator, scales))
