"""Self-reflection: the agent rewrites the reasoning of tasks it failed, and keeps what holds without the hint.

STaR's rationalization (Zelikman et al. 2022), in the worked form the agent learned in Quiet-STaR
(`"<prompt> (show steps)"` answered by `"<steps> => <answer>"`):

1. *Attempt.* The agent answers train tasks of each domain in the worked form (greedy). Attempts whose answer
   the verifier accepts are kept as they are (STaR's first pass).
2. *Reflect.* For every failure the agent is shown its own attempt, the verifier's verdict and the reference
   answer as a hint, and writes its steps again (`reflection_prompt`).
3. *Filter.* A rewritten reasoning is kept only if, with the hint gone, the agent reads the plain worked prompt
   followed by those steps and the arrow and itself continues with an answer the verifier accepts
   (`holds_without_hint`). A reasoning that only copies the hint into its last line does not pass: the answer
   has to follow from the steps in the agent's own reading.

The kept reasonings (first-pass successes and accepted rewrites) train one more SVF expert, the agent's
"successful reasoning patterns" (`reasoning`), by supervised fine-tuning of its singular-value scales.
`ReflectionReport` counts failures and accepted rewrites per domain; the stage measures the worked-form test
accuracy of the entering weights against the reasoning expert. Exercise:
`pytest tests/stages/experts/test_reflection.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ...models import completion_text, generate, generate_token_ids, prompt_format
from ...tasks import Task, verify
from ...tasks.worked import STEPS_TO_ANSWER, split_worked, worked_answer, worked_prompt
from ...training.supervised import train_supervised

REASONING = "reasoning"  # the name of the expert trained on the kept reasonings


def reflection_prompt(task: Task, attempt: str) -> str:
    """The prompt that shows the agent its failed attempt, the verdict and the reference answer (the hint)."""
    return (f"{worked_prompt(task)}\nyour steps: {attempt.strip() or '(none)'}\nverdict: wrong. "
            f"the answer is {task.answer}. write the steps again")


def worked_attempts(model, tokenizer, tasks: Sequence[Task], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """The agent's greedy worked-form answer to every task."""
    if not tasks:
        return []
    return generate(model, tokenizer, [worked_prompt(t) for t in tasks], max_new_tokens=max_new_tokens,
                    batch_size=batch_size, progress=False)


def worked_correct(task: Task, text: str) -> bool:
    """Whether a worked-form answer has steps and an answer the verifier accepts."""
    parts = split_worked(text)
    return parts is not None and verify(task, parts[1]) > 0


def holds_without_hint(model, tokenizer, tasks: Sequence[Task], steps: Sequence[str], max_answer_tokens: int = 16,
                       batch_size: int = 32) -> list[bool]:
    """Whether the agent, given the plain worked prompt (no hint) and `steps[i]` then the arrow, continues with
    an answer the verifier accepts for `tasks[i]`."""
    fmt = prompt_format(tokenizer)
    prompts = fmt.encode_prompts([worked_prompt(t) for t in tasks])
    arrow = STEPS_TO_ANSWER.rstrip()  # the answer's leading space is the model's to write, as in training
    forced = [ids + tokenizer(s + arrow, add_special_tokens=False)["input_ids"] for ids, s in zip(prompts, steps)]
    generated = generate_token_ids(model, tokenizer, forced, max_new_tokens=max_answer_tokens, temperature=0.0,
                                   batch_size=batch_size, fmt=fmt, progress=False)
    return [verify(t, completion_text(tokenizer, ids, fmt)) > 0 for t, ids in zip(tasks, generated)]


@dataclass
class ReflectionReport:
    """What self-reflection found, per domain."""

    attempted: dict[str, int] = field(default_factory=dict)
    first_pass: dict[str, int] = field(default_factory=dict)  # worked attempts the verifier accepted
    failures: dict[str, int] = field(default_factory=dict)
    rewritten: dict[str, int] = field(default_factory=dict)  # rewrites whose own answer is right (with the hint)
    accepted: dict[str, int] = field(default_factory=dict)  # rewrites that hold without the hint
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        domains = sorted(self.attempted)
        return {
            "attempted": self.attempted, "first_pass": self.first_pass, "failures": self.failures,
            "rewritten_with_hint": self.rewritten, "accepted": self.accepted,
            # the headline: the share of failures turned into verified reasoning
            "turned_share": {d: round(100.0 * self.accepted[d] / self.failures[d], 2) if self.failures[d] else 0.0
                             for d in domains},
            "examples": self.examples,
        }


def reflect(model, tokenizer, tasks: Sequence[Task], *, max_new_tokens: int, examples: int = 3
            ) -> tuple[list[tuple[str, str]], ReflectionReport]:
    """(training pairs of the kept reasonings, report) for `tasks` (those without worked steps are skipped)."""
    tasks = [t for t in tasks if t.rationale]
    report = ReflectionReport()
    for t in tasks:
        for counter in (report.attempted, report.first_pass, report.failures, report.rewritten, report.accepted):
            counter.setdefault(t.domain, 0)
        report.attempted[t.domain] += 1
    attempts = worked_attempts(model, tokenizer, tasks, max_new_tokens)
    kept: list[tuple[str, str]] = []
    failed: list[tuple[Task, str]] = []
    for t, text in zip(tasks, attempts):
        if worked_correct(t, text):
            report.first_pass[t.domain] += 1
            kept.append((worked_prompt(t), worked_answer(split_worked(text)[0], t.answer)))
        else:
            report.failures[t.domain] += 1
            failed.append((t, text))
    rewrites = generate(model, tokenizer, [reflection_prompt(t, a) for t, a in failed], max_new_tokens=max_new_tokens,
                        progress=False) if failed else []
    candidates = [(t, split_worked(r)[0], a, r) for (t, a), r in zip(failed, rewrites) if worked_correct(t, r)]
    for t, *_ in candidates:
        report.rewritten[t.domain] += 1
    holds = holds_without_hint(model, tokenizer, [c[0] for c in candidates], [c[1] for c in candidates]) if candidates else []
    for (t, steps, attempt, rewrite), ok in zip(candidates, holds):
        if ok:
            report.accepted[t.domain] += 1
            kept.append((worked_prompt(t), worked_answer(steps, t.answer)))
            if len(report.examples) < examples:
                report.examples.append({"prompt": worked_prompt(t), "attempt": attempt, "rewrite": rewrite,
                                        "answer": t.answer})
    return kept, report


def train_reasoning_expert(policy: torch.nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], *, steps: int,
                           batch_size: int, lr: float, seed: int) -> list[float]:
    """Fine-tune an SVF policy's singular-value scales on the kept reasonings; the per-step losses."""
    rng = random.Random(seed)
    pool = list(pairs)

    def next_batch(step: int):
        return [pool[rng.randrange(len(pool))] for _ in range(batch_size)]

    log = train_supervised(policy, tokenizer, next_batch, steps=steps, lr=lr, params=list(policy.logits),
                           desc="experts: reasoning expert", progress=False)
    return [round(x, 4) for x in log.losses]

