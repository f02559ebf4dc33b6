"""Prompt Baking (Bhargava et al. 2024): make the un-prompted model match the prompted one.

For a prompt u and inputs x, the baked weights minimise the forward KL, per response token and over the whole
vocabulary, from the prompted, frozen teacher to the un-prompted student,

    KL( P_teacher(. | u, x, y_<t) || P_student(. | x, y_<t) ),   y ~ P_teacher(. | u, x) at a temperature,

on trajectories y sampled once from the prompted teacher. The teacher's log-probabilities are computed once
(`teacher_targets`), in full or as its top-K tokens plus one tail bucket holding the rest of the mass (a lower
bound of the full KL: merging outcomes never raises a KL); `measure_kl` always reports the full-vocabulary KL,
so the approximation is measured beside it. Prompts differ per example (a knowledge passage per question), so
one bake can carry a family of prompts; an example whose prompt is empty makes the student keep the teacher's
un-prompted behaviour (what the baking stage mixes in to keep other skills).

`bake` is the optimiser loop; it records copies of the trained parameters at chosen steps (half-baking: a bake
stopped early is a continuous prompt strength). Exercise: `pytest tests/stages/baking`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.nn import functional as F

from ..models import generate_token_ids, pad_id, prompt_format
from ..utils.progress import progress as progress_bar
from .optim import make_optimizer, set_lr, warmup_cosine


@dataclass
class BakeExample:
    """One trajectory: the prompted prompt's ids (teacher), the plain prompt's ids (student), the response."""

    teacher_ids: list[int]
    student_ids: list[int]
    response: list[int]


@dataclass
class Targets:
    """The teacher's log-probabilities on each example's response positions: full [T, V] or top-K [T, K]."""

    logprobs: list[torch.Tensor]
    indices: list[torch.Tensor] | None = None  # top-K token ids, None for the full vocabulary


@dataclass
class BakeLog:
    losses: list[float] = field(default_factory=list)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0


def sample_examples(
    teacher, tokenizer, prompted: Sequence[str], plain: Sequence[str], *, samples: int, temperature: float,
    max_new_tokens: int, seed: int, max_positions: int | None = None, batch_size: int = 32,
) -> list[BakeExample]:
    """Trajectories of the teacher on each prompted prompt (`samples` per prompt); the student sees `plain`.

    Prompts are rendered with the tokenizer's format. Examples longer than `max_positions` are dropped (a
    position the model was never trained at would make the teacher's distribution meaningless)."""
    if len(prompted) != len(plain):
        raise ValueError(f"{len(prompted)} prompted prompts but {len(plain)} plain ones")
    fmt = prompt_format(tokenizer)
    teacher_ids = fmt.encode_prompts(list(prompted))
    student_ids = fmt.encode_prompts(list(plain))
    generated = generate_token_ids(
        teacher, tokenizer, teacher_ids, max_new_tokens=max_new_tokens, temperature=temperature, n=samples,
        seed=seed, fmt=fmt, batch_size=batch_size, progress=False)
    out = []
    for k, response in enumerate(generated):
        i = k // samples
        if not response:
            continue
        if max_positions is not None and len(teacher_ids[i]) + len(response) > max_positions:
            continue
        out.append(BakeExample(list(teacher_ids[i]), list(student_ids[i]), list(response)))
    return out


def _response_logits(model, rows: Sequence[list[int]], responses: Sequence[list[int]], pad: int) -> list[torch.Tensor]:
    """Per row, the logits at the positions that predict its response tokens ([len(response), V])."""
    device = next(model.parameters()).device
    full = [r + s for r, s in zip(rows, responses)]
    width = max(len(f) for f in full)
    ids = torch.full((len(full), width), pad, dtype=torch.long)
    mask = torch.zeros((len(full), width), dtype=torch.long)
    for i, f in enumerate(full):
        ids[i, : len(f)] = torch.tensor(f)
        mask[i, : len(f)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return [logits[i, len(r) - 1 : len(r) - 1 + len(s)] for i, (r, s) in enumerate(zip(rows, responses))]


@torch.no_grad()
def teacher_targets(teacher, tokenizer, examples: Sequence[BakeExample], *, top_k: int = 0,
                    batch_size: int = 32) -> Targets:
    """The frozen teacher's log-probabilities on every response position (with the prompt in context)."""
    was_training = teacher.training
    teacher.eval()
    pad = pad_id(tokenizer)
    logprobs, indices = [], []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        for logits in _response_logits(teacher, [e.teacher_ids for e in chunk], [e.response for e in chunk], pad):
            lp = F.log_softmax(logits.float(), dim=-1).cpu()
            if top_k and top_k < lp.size(-1):
                values, idx = lp.topk(top_k, dim=-1)
                logprobs.append(values)
                indices.append(idx)
            else:
                logprobs.append(lp)
    teacher.train(was_training)
    return Targets(logprobs, indices if indices else None)


def kl_per_token(student_logits: torch.Tensor, teacher_logprobs: torch.Tensor,
                 teacher_indices: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) at each position ([T]); with `teacher_indices`, over the teacher's top-K tokens
    plus a tail bucket holding the remaining mass of each side."""
    s = F.log_softmax(student_logits.float(), dim=-1)
    if teacher_indices is None:
        return (teacher_logprobs.exp() * (teacher_logprobs - s)).sum(-1)
    s_top = s.gather(-1, teacher_indices)
    p_top = teacher_logprobs.exp()
    head = (p_top * (teacher_logprobs - s_top)).sum(-1)
    p_tail = (1 - p_top.sum(-1)).clamp(min=0.0)
    q_tail = (1 - s_top.exp().sum(-1)).clamp(min=1e-12)
    tail = torch.where(p_tail > 1e-12, p_tail * (p_tail.clamp(min=1e-12).log() - q_tail.log()),
                       torch.zeros_like(p_tail))
    return head + tail


def _batch_kl(model, examples, targets: Targets, idx: Sequence[int], pad: int) -> tuple[torch.Tensor, int]:
    logits = _response_logits(model, [examples[i].student_ids for i in idx], [examples[i].response for i in idx], pad)
    total, count = logits[0].new_zeros((), dtype=torch.float32), 0
    for j, i in enumerate(idx):
        t_idx = targets.indices[i].to(logits[j].device) if targets.indices is not None else None
        per = kl_per_token(logits[j], targets.logprobs[i].to(logits[j].device), t_idx)
        total = total + per.sum()
        count += per.numel()
    return total, count


@torch.no_grad()
def measure_kl(model, tokenizer, examples: Sequence[BakeExample], targets: Targets, batch_size: int = 32) -> float:
    """Mean KL(teacher || model) per response token, the model seeing the plain prompts."""
    if not examples:
        return 0.0
    was_training = model.training
    model.eval()
    pad = pad_id(tokenizer)
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        value, n = _batch_kl(model, examples, targets, range(start, min(len(examples), start + batch_size)), pad)
        total += float(value)
        count += n
    model.train(was_training)
    return total / max(1, count)


def bake(
    model, tokenizer, examples: Sequence[BakeExample], targets: Targets, *, params: Sequence[torch.nn.Parameter],
    steps: int, batch_size: int, lr: float, warmup_steps: int = 0, grad_clip: float = 1.0, seed: int = 0,
    snapshot_steps: Sequence[int] = (), named: dict[str, torch.nn.Parameter] | None = None, desc: str = "bake",
    sampler=None,
) -> BakeLog:
    """Minimise the mean per-token KL to the teacher targets over `steps` batches of examples.

    `snapshot_steps`: steps (0 = before training, `steps` = the end) at which copies of `named` parameters are
    kept, for half-baking. `sampler(rng, batch_size) -> indices` chooses each batch (default: uniform)."""
    if not examples:
        raise ValueError("nothing to bake: no trajectories")
    params = list(params)
    optimizer = make_optimizer(params, lr)
    rng = random.Random(seed)
    pad = pad_id(tokenizer)
    log = BakeLog()
    wanted = set(snapshot_steps)

    def snap(step: int) -> None:
        if step in wanted and named is not None:
            log.snapshots[step] = {n: p.detach().clone() for n, p in named.items()}

    snap(0)
    model.train()
    start = time.perf_counter()
    bar = progress_bar(range(steps), desc=desc)
    for step in bar:
        set_lr(optimizer, lr * warmup_cosine(step, steps, warmup_steps))
        idx = sampler(rng, batch_size) if sampler else [rng.randrange(len(examples)) for _ in range(batch_size)]
        total, count = _batch_kl(model, examples, targets, idx, pad)
        loss = total / max(1, count)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        log.losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(kl=f"{sum(log.losses[-10:]) / len(log.losses[-10:]):.4f}")
        snap(step + 1)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
