"""Specialist fine-tunes built to be merged: low-rank updates anchored to the base outside their own domain.

Task arithmetic assumes weight disentanglement (Ortiz-Jimenez et al. 2023): adding specialist B's task vector
must leave specialist A's behaviour on A's inputs alone. Two things push a fine-tune toward that here:

- LoRA (Hu et al. 2021): the update of every linear layer is a rank-r product, trained alone and then folded
  back into the weights (`merge_and_unload`), so the specialist is an ordinary model whose task vector has
  rank at most r per matrix;
- an anchor term: on prompts of the *other* domains (all levels the specialists train on), the specialist's
  next-token distribution is pulled toward the frozen base's by KL, so its update does as little as it can
  where other specialists work.

On the default run, evomerge's lineage (`runs/tiny/01-evomerge/lineage.jsonl`) scores base + strings + logic
task vectors at 0.663 validation fitness, above each specialist alone (0.48, 0.607, 0.53); the old recipe
(`seed_stage.finetune_method=full seed_stage.anchor_weight=0 seed_stage.finetune.lr=3e-4`) gave specialists
whose merges stayed below the best of them.
Exercise: `pytest tests/stages/seed/test_composable.py`.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
from peft import LoraConfig, get_peft_model

from ...tasks import DOMAINS, iter_tasks
from ...training.distill import kl_to_teacher
from ...training.supervised import LossFn, answer_cross_entropy

Pair = tuple[str, str]
# every linear layer of a Llama block
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def with_lora(model: torch.nn.Module, rank: int, alpha: float) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """Wrap `model` with LoRA adapters on every linear layer; returns the wrapper and its trainable parameters."""
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning on every specialist);
        # gradient checkpointing is never used here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        wrapped = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS),
                                                   lora_dropout=0.0, bias="none"))
    return wrapped, [p for p in wrapped.parameters() if p.requires_grad]


def fold_lora(wrapped: torch.nn.Module) -> torch.nn.Module:
    """The plain model with the adapters added into its weights (nothing of peft is left in it)."""
    return wrapped.merge_and_unload()


def anchored_batches(
    own: Callable[[int], list[Pair]], domain: str, levels: Sequence[int], n_anchor: int, seed: int, world_seed: int,
) -> Callable[[int], list[Pair]]:
    """`own(step)` followed by `n_anchor` train-split tasks of every other domain (the rows `anchored_loss` anchors)."""
    others = iter_tasks([d for d in DOMAINS if d != domain], list(levels), "train", seed, world_seed=world_seed)

    def batch(step: int) -> list[Pair]:
        anchors = [next(others) for _ in range(n_anchor)]
        return list(own(step)) + [(t.prompt, t.answer) for t in anchors]

    return batch


def anchored_loss(reference: torch.nn.Module, n_anchor: int, weight: float) -> LossFn:
    """Answer cross-entropy on the leading rows, plus `weight` x KL(reference || model) on the last `n_anchor`.

    The KL covers the answer positions of the anchor rows: what the model would say on another domain's
    question. The reference is frozen (no gradient flows into it).
    """
    def loss_fn(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        if n_anchor == 0 or weight == 0:
            return answer_cross_entropy(model, batch)
        own = {k: v[:-n_anchor] for k, v in batch.items() if torch.is_tensor(v)}
        anchor = {k: v[-n_anchor:] for k, v in batch.items() if torch.is_tensor(v)}
        loss = answer_cross_entropy(model, own)
        logits = model(input_ids=anchor["input_ids"], attention_mask=anchor["attention_mask"]).logits[:, :-1]
        with torch.no_grad():
            ref_logits = reference(input_ids=anchor["input_ids"], attention_mask=anchor["attention_mask"]).logits[:, :-1]
        return loss + weight * kl_to_teacher(logits, ref_logits, anchor["labels"][:, 1:] != -100)

    return loss_fn
