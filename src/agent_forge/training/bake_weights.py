"""Which weights a bake trains, and how they return to a plain model: a folded LoRA, or latent weights.

* `lora`: a peft LoRA on the chosen linear layers; `fold` merges it (`merge_and_unload`) so the result is a
  plain model of the same class with the same parameter names, and nothing of peft is left.
* `latent`: the chosen layers' own weights. On a ternary model these are BitLinear's latent full-precision
  weights, trained through the straight-through estimator; the forward pass re-quantizes them, so the model
  stays ternary (peft cannot wrap BitLinear, which is not an `nn.Linear`).

`BakeWeights.prepare(model, ...)` returns the model to train (the peft wrapper or the model itself), the
trainable parameters by name (for half-baking snapshots), and `fold()` that gives back the plain model.
Exercise: `pytest tests/stages/baking/test_bake_weights.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ..errors import ForgeError
from ..models.formats.ternary import BitLinear, is_ternary


def chosen_linears(model: torch.nn.Module, pattern: str, frozen: Iterable[str] = ()) -> list[str]:
    """Names of the linear (or BitLinear) modules matching `pattern`, minus those whose weight is `frozen`."""
    frozen = set(frozen)
    regex = re.compile(pattern)
    return [name for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, BitLinear)) and regex.search(name) and f"{name}.weight" not in frozen]


@dataclass
class BakeWeights:
    model: torch.nn.Module  # what to run forward and train
    named: dict[str, torch.nn.Parameter]  # the trainable parameters by name
    fold: Callable[[], torch.nn.Module]  # the trained result as a plain model of the entering class
    method: str

    @classmethod
    def prepare(cls, model: torch.nn.Module, *, method: str, pattern: str, frozen: Iterable[str] = (),
                rank: int = 8, alpha: float = 16.0) -> "BakeWeights":
        names = chosen_linears(model, pattern, frozen)
        if not names:
            raise ForgeError(f"baking: no linear layer matches modules={pattern!r} (after the frozen ones)")
        if method == "auto":
            method = "latent" if is_ternary(model) else "lora"
        for p in model.parameters():
            p.requires_grad_(False)
        if method == "latent":
            named = {f"{n}.weight": model.get_submodule(n).weight for n in names}
            for p in named.values():
                p.requires_grad_(True)
            return cls(model, named, lambda: model, "latent")
        if method != "lora":
            raise ForgeError(f"baking: unknown method {method!r} (lora, latent or auto)")
        if any(isinstance(model.get_submodule(n), BitLinear) for n in names):
            raise ForgeError("baking: method lora cannot wrap ternary BitLinear layers; use method latent (or auto)")
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=names, bias="none")
        wrapped = get_peft_model(model, config)
        named = {n: p for n, p in wrapped.named_parameters() if p.requires_grad}

        def fold() -> torch.nn.Module:
            return wrapped.merge_and_unload()

        return cls(wrapped, named, fold, "lora")

    def load(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Set the trainable parameters to a snapshot taken by `training.baking.bake`."""
        with torch.no_grad():
            for name, value in snapshot.items():
                self.named[name].copy_(value)
