"""Can these models be merged? Same family, same tensor names and shapes, same vocabulary.

Used before any merging work starts (seed stage's external profile, EvoMerge), so that incompatible inputs
end with one line that says exactly why instead of a shape error deep inside a merge.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import ForgeError


def check_mergeable(models: Mapping[str, torch.nn.Module], tokenizers: Mapping[str, object] | None = None) -> None:
    """Raise ForgeError naming the first difference that makes the models unmergeable."""
    names = list(models)
    if len(names) < 2:
        return
    ref_name = names[0]
    ref = models[ref_name]
    ref_type = getattr(ref.config, "model_type", type(ref).__name__)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    for name in names[1:]:
        model = models[name]
        model_type = getattr(model.config, "model_type", type(model).__name__)
        if model_type != ref_type:
            raise ForgeError(f"cannot merge {ref_name!r} ({ref_type}) with {name!r} ({model_type}): different model families")
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        missing = sorted(set(ref_shapes) - set(shapes))
        extra = sorted(set(shapes) - set(ref_shapes))
        if missing or extra:
            what = f"missing {missing[:3]}" if missing else f"extra {extra[:3]}"
            raise ForgeError(f"cannot merge {ref_name!r} with {name!r}: different tensors ({what})")
        for key, shape in ref_shapes.items():
            if shapes[key] != shape:
                raise ForgeError(
                    f"cannot merge {ref_name!r} with {name!r}: tensor {key} has shape {list(shape)} vs {list(shapes[key])}"
                )
    if tokenizers:
        ref_vocab = tokenizers[ref_name].get_vocab()
        for name in names[1:]:
            vocab = tokenizers[name].get_vocab()
            if vocab != ref_vocab:
                diff = sorted(set(vocab.items()) ^ set(ref_vocab.items()))[:3]
                raise ForgeError(
                    f"cannot merge {ref_name!r} with {name!r}: different vocabularies "
                    f"({len(ref_vocab)} vs {len(vocab)} tokens; first differences {diff})"
                )
