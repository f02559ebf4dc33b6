"""Sampling a group of answers per episode, optionally after an internal thought, and scoring them.

Without thoughts, each episode's rendered prompt gets `n` sampled completions. With thoughts (a model whose
tokenizer has Quiet-STaR's `<|startofthought|>` / `<|endofthought|>` delimiters), each sample first draws a
thought of up to `thought_tokens` tokens after the start delimiter, then the end delimiter is appended and the
answer is drawn; the training sequence is prompt + delimiters + thought + answer, so the policy gradient
credits thoughts that led to verified answers. The reasoning score is Quiet-STaR's signal applied to the
reference answer: how much the thought raised the mean log-probability of the reference answer tokens over
answering without it (positive part, capped at 1), added to the verifier's score with a small weight.

Exercise: `pytest tests/stages/curriculum/test_cycle.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from ...models import Agent, completion_text, generate_token_ids, pad_id, prompt_format, token_logprobs
from ...models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT, thought_tokens_of
from .episodes import Episode



@dataclass
class Sample:
    """One sampled answer: its group (episode index), the ids to train on, its text and its scores."""

    group: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    score: float
    reasoning: float = 0.0
    thought: str | None = None

    @property
    def reward(self) -> float:
        return self.score + self.reasoning


@dataclass(frozen=True)
class Thinker:
    """The thought delimiters of a tokenizer and how long a thought may be."""

    start_id: int
    end_id: int
    length: int = 8

    @classmethod
    def of(cls, agent: Agent, length: int = 8) -> "Thinker | None":
        """The Thinker of an agent with thought delimiters, else None (a model without thought tokens).

        The delimiters are the ones the agent's head file names (Quiet-STaR may have been configured with
        other strings), else the standard ones if its vocabulary has them.
        """
        if agent.thoughts is not None:
            tokens = agent.thoughts.tokens
        else:
            vocab = agent.tokenizer.get_vocab()
            if START_OF_THOUGHT not in vocab or END_OF_THOUGHT not in vocab:
                return None
            tokens = thought_tokens_of(agent.tokenizer)
        return cls(tokens.start_id, tokens.end_id, length)


def _strip_stops(ids: Sequence[int], stop_ids: Sequence[int], drop: Sequence[int] = ()) -> list[int]:
    out = []
    for token in ids:
        if token in stop_ids:
            break
        if token not in drop:
            out.append(token)
    return out


@torch.no_grad()
def _mean_answer_logprob(model, tokenizer, contexts: list[list[int]], answers: list[list[int]]) -> list[float]:
    """Mean log-probability of each answer's ids (terminator included) after its context ids."""
    rows = [c + a for c, a in zip(contexts, answers)]
    width = max(len(r) for r in rows)
    device = next(model.parameters()).device
    ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    logprobs = token_logprobs(logits[:, :-1], ids[:, 1:].to(device))
    out = []
    for i, (c, a) in enumerate(zip(contexts, answers)):
        out.append(float(logprobs[i, len(c) - 1 : len(c) - 1 + len(a)].mean()))
    return out


def rollout(
    model,
    tokenizer,
    episodes: Sequence[Episode],
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    thinker: Thinker | None = None,
    think_probability: float = 0.0,
    reasoning_weight: float = 0.0,
    batch_size: int = 64,
) -> list[Sample]:
    """`n` scored samples per episode; episode i's samples have `group == i`."""
    if not episodes:
        return []
    fmt = prompt_format(tokenizer)
    prompt_ids = fmt.encode_prompts([e.prompt for e in episodes])
    rng = random.Random(seed)
    thinking = [thinker is not None and rng.random() < think_probability for _ in episodes]
    samples: list[Sample] = []
    plain = [i for i, t in enumerate(thinking) if not t]
    if plain:
        generated = generate_token_ids(
            model, tokenizer, [prompt_ids[i] for i in plain], max_new_tokens=max_new_tokens, temperature=temperature,
            n=n, seed=seed, batch_size=batch_size, fmt=fmt, progress=False,
        )
        for k, i in enumerate(plain):
            for j in range(n):
                ids = generated[k * n + j]
                text = completion_text(tokenizer, ids, fmt)
                samples.append(Sample(i, prompt_ids[i], list(ids), text, episodes[i].score(text)))
    thinkers = [i for i, t in enumerate(thinking) if t]
    if thinkers:
        samples.extend(_rollout_with_thoughts(
            model, tokenizer, episodes, prompt_ids, thinkers, n=n, temperature=temperature,
            max_new_tokens=max_new_tokens, seed=seed, thinker=thinker, reasoning_weight=reasoning_weight,
            batch_size=batch_size, fmt=fmt,
        ))
    samples.sort(key=lambda s: s.group)
    return samples


def _rollout_with_thoughts(
    model, tokenizer, episodes, prompt_ids, indices, *, n, temperature, max_new_tokens, seed, thinker: Thinker,
    reasoning_weight, batch_size, fmt,
) -> list[Sample]:
    delimiters = (thinker.start_id, thinker.end_id)
    thought_ids = generate_token_ids(
        model, tokenizer, [prompt_ids[i] + [thinker.start_id] for i in indices], max_new_tokens=thinker.length,
        temperature=temperature, n=n, seed=seed + 1, batch_size=batch_size, fmt=fmt, progress=False,
    )
    thoughts = [_strip_stops(t, fmt.stop_ids, drop=delimiters) for t in thought_ids]
    groups = [i for i in indices for _ in range(n)]
    contexts = [prompt_ids[g] + [thinker.start_id] + t + [thinker.end_id] for g, t in zip(groups, thoughts)]
    # one answer per thought: the thought is what varies within the group
    answers = generate_token_ids(
        model, tokenizer, contexts, max_new_tokens=max_new_tokens, temperature=temperature, n=1, seed=seed + 2,
        batch_size=batch_size, fmt=fmt, progress=False,
    )
    reasoning = [0.0] * len(groups)
    if reasoning_weight > 0:
        refs = fmt.encode_answers([episodes[g].task.answer for g in groups])
        with_thought = _mean_answer_logprob(model, tokenizer, contexts, refs)
        without = _mean_answer_logprob(model, tokenizer, [prompt_ids[g] for g in groups], refs)
        reasoning = [reasoning_weight * min(1.0, max(0.0, a - b)) for a, b in zip(with_thought, without)]
    samples = []
    for g, thought, context, answer, bonus in zip(groups, thoughts, contexts, answers, reasoning):
        text = completion_text(tokenizer, answer, fmt)
        completion = context[len(prompt_ids[g]):] + list(answer)
        samples.append(Sample(
            g, prompt_ids[g], completion, text, episodes[g].score(text), bonus,
            tokenizer.decode(thought, skip_special_tokens=True),
        ))
    return samples
