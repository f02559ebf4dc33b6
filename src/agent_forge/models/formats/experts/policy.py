"""Confidence decides which weights answer: the base weights, one expert, or a mixture of experts.

Two numbers per prompt: the self-model's confidence that the agent's own (base-weights) answer is right
(`inference.confidence.predict_confidence`, taught in the curriculum stage), and the dispatch classifier's
class probabilities p (the agent's own classification or the hidden-state router). With thresholds
`base_above` and `single_above`, chosen on validation by the experts stage (`choose_policy`):

* confidence >= base_above: the base weights (the agent expects to be right; an expert could only disturb it);
* else, max p >= single_above: the most probable class's expert;
* else a mixture, z = sum_k a_k z_k with a = p rounded to 2 decimals (the SVF rescale keeps sum(S), so the
  scale of a does not matter); rounding makes prompts with nearly the same p share one set of weights, so a
  batch is answered in a few groups instead of one pass per prompt.

A mixture is named by a key, "mix:arithmetic=0.62,facts=0.38", which is what `ExpertSet.using` and its
`mode` accept beside an expert's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ....errors import ForgeError
from .svf import mix

MIX = "mix:"


@dataclass
class ConfidencePolicy:
    base_above: float  # self-confidence at or above which the base weights answer (> 1: never)
    single_above: float  # top class probability at or above which a single expert answers (0: always)

    def decide(self, classes: Sequence[str], probs: torch.Tensor, confidence: float, experts) -> str | None:
        """The weights for one prompt: None (base), an expert's name, or a mixture key."""
        if confidence >= self.base_above:
            return None
        k = int(probs.argmax())
        if float(probs[k]) >= self.single_above:
            return classes[k] if classes[k] in experts else None
        return mixture_key(classes, probs, experts)

    def as_dict(self) -> dict:
        return {"base_above": self.base_above, "single_above": self.single_above}


def mixture_key(classes: Sequence[str], probs: torch.Tensor, experts) -> str | None:
    """The key of the mixture with the classes' probabilities (2 decimals, experts only, zeros dropped); a
    single remaining expert is named plainly, none left is the base (None)."""
    weights = {c: round(float(p), 2) for c, p in zip(classes, probs) if c in experts}
    weights = {c: w for c, w in weights.items() if w > 0}
    if not weights:
        return None
    if len(weights) == 1:
        return next(iter(weights))
    return MIX + ",".join(f"{c}={w:.2f}" for c, w in sorted(weights.items()))


def vector(key: str, experts: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The z of an expert's name or of a mixture key; ForgeError for anything else."""
    if key in experts:
        return dict(experts[key])
    if key.startswith(MIX):
        names, weights = [], []
        for part in key[len(MIX):].split(","):
            name, _, w = part.partition("=")
            try:
                value = float(w)
            except ValueError:
                value = -1.0
            if name not in experts or not 0.0 <= value <= 1.0:
                raise ForgeError(f"bad mixture {key!r}: expected mix:name=weight,... over {sorted(experts)}")
            names.append(name)
            weights.append(value)
        if sum(weights) <= 0:
            raise ForgeError(f"bad mixture {key!r}: the weights sum to 0")
        return mix([experts[n] for n in names], weights)
    raise ForgeError(f"no expert named {key!r}; this agent has {sorted(experts)}")


def choose_policy(confidence: Sequence[float], top: Sequence[float], base: Sequence[bool], single: Sequence[bool],
                  mixture: Sequence[bool]) -> tuple[ConfidencePolicy, float]:
    """(policy, validation accuracy 0-1): the thresholds that answer the most validation prompts right, given
    per prompt the self-confidence, the top class probability and whether the base weights / the top expert
    / the mixture answer it right. Candidates are the observed values (2 decimals) and the extremes 0 and
    1.01 (always / never); ties go
    to the highest base threshold and then the lowest single threshold (experts answer more often, and
    single experts before mixtures)."""
    c, p = torch.tensor(list(confidence), dtype=torch.float64), torch.tensor(list(top), dtype=torch.float64)
    rights = [torch.tensor(list(x), dtype=torch.bool) for x in (base, single, mixture)]
    if len(c) == 0:
        return ConfidencePolicy(1.01, 0.0), 0.0
    # the extremes 0 (always) and 1.01 (never) of both thresholds: rounding may leave an observed value just
    # below its own candidate, and "never a single expert" (always a mixture) needs a threshold above every p
    tb = torch.tensor(sorted({0.0, 1.01, *[round(float(v), 2) for v in c]}, reverse=True), dtype=torch.float64)
    ts = torch.tensor(sorted({0.0, 1.01, *[round(float(v), 2) for v in p]}), dtype=torch.float64)
    to_base = c[None, :] >= tb[:, None]  # [A, N]
    to_single = p[None, :] >= ts[:, None]  # [B, N]
    answered = torch.where(to_base[:, None, :], rights[0], torch.where(to_single[None, :, :], rights[1], rights[2]))
    acc = answered.double().mean(-1)  # [A, B]
    flat = int(torch.argmax(acc))  # first maximum: highest base threshold, then lowest single threshold
    a, b = divmod(flat, len(ts))
    return ConfidencePolicy(float(tb[a]), float(ts[b])), float(acc[a, b])
