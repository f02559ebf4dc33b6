"""Save a model with its tokenizer as a Hugging Face folder, atomically.

The folder holds safetensors weights, config.json, the tokenizer files and a generation_config.json whose
eos ids include the answer terminator (so plain `model.generate` stops where our `generate` does). It is
written under a temporary sibling name and renamed into place only when complete (`utils.atomic`), so a crash
or a kill mid-save never leaves a half-written folder at the target path; an existing model there is replaced
only once the new one is complete.

Tied input/output embeddings declared by the config are saved once, as transformers expects. Other tensors
that happen to share storage (something safetensors cannot store) are saved as separate copies, so the
folder still loads with identical outputs, but the sharing itself is not preserved.

Exercise: `pytest tests/models/test_save_load.py`.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from ..utils.atomic import atomic_directory
from .prompting import pad_id, prompt_format


def save_model(model, tokenizer, path: str | os.PathLike) -> Path:
    """Write `model` and `tokenizer` to the HF folder `path` (replacing it atomically); return the path.

    A model with extensions (ternary marker, thought head, ...) is saved with `save_agent`, which calls this
    module's `write_model_files` and adds the extensions' files inside the same atomic write.
    """
    path = Path(path)
    with atomic_directory(path) as temp:
        write_model_files(model, tokenizer, temp)
    return path


def write_model_files(model, tokenizer, folder: Path) -> None:
    """Weights (safetensors), config, tokenizer and generation config into an existing (temporary) folder."""
    state = _state_dict_without_undeclared_sharing(model)
    model.save_pretrained(folder, state_dict=state)
    tokenizer.save_pretrained(folder)
    _generation_config(model, tokenizer).save_pretrained(folder)


def _generation_config(model, tokenizer):
    """The model's generation config with bos/pad/eos ids that agree with the tokenizer and its terminator."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    stops = list(prompt_format(tokenizer).stop_ids)
    config.eos_token_id = stops[0] if len(stops) == 1 else stops
    config.pad_token_id = pad_id(tokenizer)
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    return config


def _state_dict_without_undeclared_sharing(model) -> dict[str, torch.Tensor]:
    """The state dict, with a private copy of every tensor that shares storage without a declared tie."""
    state = model.state_dict()
    tied = _declared_tie_storage(model)
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        groups.setdefault((tensor.device, tensor.untyped_storage().data_ptr()), []).append(name)
    for (_, storage), names in groups.items():
        if len(names) < 2 or (storage == tied and len(names) == 2):
            continue  # alone, or the embeddings the config ties: transformers saves one of them
        for name in names[1:]:
            state[name] = state[name].clone()
    return state


def _declared_tie_storage(model) -> int | None:
    """Storage address of the input embeddings when the config ties them to the output layer and they are tied."""
    if not getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        return None
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None or inputs.weight is not outputs.weight:
        return None
    return inputs.weight.untyped_storage().data_ptr()
