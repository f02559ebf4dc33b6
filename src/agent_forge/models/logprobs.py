"""Log-probabilities of given tokens under a model's logits: the one gather every scorer and trainer shares.

Exercise: `python -m pytest tests/models/test_logprobs.py`.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[...]) under `logits[..., :]`, shape `targets.shape` (= `logits.shape[:-1]`).

    Half-precision logits (bf16, fp16) are scored in float32: a log-softmax over the vocabulary in bf16 loses
    about two decimal digits. There is no shift: for next-token scoring pass `logits[:, :-1]` and `ids[:, 1:]`.
    Negative targets (the -100 ignore label) are scored as token 0, so mask those positions yourself.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
