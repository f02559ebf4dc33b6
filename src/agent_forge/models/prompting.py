"""How a task prompt is shown to a model and what ends its answer, for training, evaluation and generation alike.

Two formats, chosen by the tokenizer:
- plain (tokenizers without a chat template, e.g. the tiny profile): `render(p) = p + "\\n"`, the answer ends
  with the eos token, and encoding adds the tokenizer's own specials (the tiny tokenizer's `<bos>`);
- chat (tokenizers with a chat template, e.g. SmolLM2): the prompt is one user turn rendered by the template
  with the generation prompt appended; the answer ends with the template's end-of-turn token (found by
  rendering an assistant turn and reading what follows it), and encoding adds nothing because the template
  already writes every special token it wants.

`encode_pairs` tokenizes (prompt, answer) batches for teacher forcing: the prompt exactly as generation sees
it, then the answer and the terminator, with the loss only on the latter and their positions recorded.

Exercise: `pytest tests/models/test_prompt_format.py`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ForgeError

IGNORE_INDEX = -100  # label value that cross-entropy skips (transformers' convention)
_MARKER = "\u2063ANSWER\u2063"  # an assistant reply no template will alter, to find what follows a turn

_cache: "weakref.WeakKeyDictionary[Any, tuple[tuple, PromptFormat]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class PromptFormat:
    """The prompt rendering and answer terminator of one tokenizer.

    `terminator_id` ends every answer; `stop_ids` are every id that ends generation (the terminator and the
    tokenizer's eos, which differ for chat models whose eos is not their end-of-turn token).
    """

    tokenizer: Any
    uses_chat_template: bool
    terminator_id: int
    terminator_text: str
    add_special_tokens: bool
    stop_ids: tuple[int, ...]

    def render(self, prompt: str) -> str:
        """The text the model sees before it starts answering."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
        return prompt + "\n"

    def training_text(self, prompt: str, answer: str) -> str:
        """Prompt, answer and terminator as one string (the token ids are those of `encode_pairs`)."""
        return self.render(prompt) + answer + self.terminator_text

    def encode_prompts(self, prompts: Sequence[str], *, render: bool = True) -> list[list[int]]:
        """Token ids of each prompt (rendered first unless `render=False`), as generation feeds them."""
        texts = [self.render(p) for p in prompts] if render else list(prompts)
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=self.add_special_tokens)["input_ids"]

    def encode_answers(self, answers: Sequence[str]) -> list[list[int]]:
        """Token ids of each answer followed by the terminator."""
        if not answers:
            return []
        encoded = self.tokenizer(list(answers), add_special_tokens=False)["input_ids"]
        return [ids + [self.terminator_id] for ids in encoded]


def prompt_format(tokenizer) -> PromptFormat:
    """The PromptFormat of `tokenizer` (cached; recomputed if its template or vocabulary changes)."""
    key = (getattr(tokenizer, "chat_template", None), len(tokenizer), tokenizer.eos_token_id)
    try:
        cached = _cache.get(tokenizer)
    except TypeError:  # an unhashable tokenizer-like object: just compute
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    fmt = _build_format(tokenizer)
    try:
        _cache[tokenizer] = (key, fmt)
    except TypeError:
        pass
    return fmt


def _build_format(tokenizer) -> PromptFormat:
    eos_id = tokenizer.eos_token_id
    if getattr(tokenizer, "chat_template", None):
        turn_end = _end_of_turn_id(tokenizer)
        terminator = turn_end if turn_end is not None else eos_id
        if terminator is None:
            raise ForgeError("tokenizer has a chat template but neither an end-of-turn token nor an eos token")
        stops = tuple(dict.fromkeys(i for i in (terminator, eos_id) if i is not None))
        return PromptFormat(
            tokenizer=tokenizer, uses_chat_template=True, terminator_id=terminator,
            terminator_text=tokenizer.convert_ids_to_tokens(terminator), add_special_tokens=False, stop_ids=stops,
        )
    if eos_id is None:
        raise ForgeError("tokenizer has neither a chat template nor an eos token, so answers cannot be terminated")
    return PromptFormat(
        tokenizer=tokenizer, uses_chat_template=False, terminator_id=eos_id, terminator_text=tokenizer.eos_token,
        add_special_tokens=True, stop_ids=(eos_id,),
    )


def _end_of_turn_id(tokenizer) -> int | None:
    """The first special token the template writes after an assistant reply, or None if there is none."""
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # templates may reject this shape (e.g. demand a system turn); eos is the fallback
        return None
    if _MARKER not in text:
        return None
    suffix = text.split(_MARKER, 1)[1]
    special = set(tokenizer.all_special_ids) | {
        i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
    }
    for token_id in tokenizer(suffix, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return token_id
    return None


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else eos (padding is masked out, so its value never matters)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


def encode_pairs(
    tokenizer, prompts: Sequence[str], answers: Sequence[str], fmt: PromptFormat | None = None, *, render: bool = True
) -> dict[str, Any]:
    """Right-padded teacher-forcing batch of prompt + answer + terminator.

    Returns `input_ids`, `attention_mask` and `labels` (LongTensors [batch, length]; labels are the input ids
    on answer and terminator positions and -100 elsewhere, unshifted as transformers expects), plus
    `answer_spans`: per row the half-open range [start, end) of answer + terminator positions, so the logits
    predicting them are at positions start-1 .. end-2, and `prompt_lengths`.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    fmt = fmt or prompt_format(tokenizer)
    prompt_ids = fmt.encode_prompts(prompts, render=render)
    answer_ids = fmt.encode_answers(answers)
    rows = [p + a for p, a in zip(prompt_ids, answer_ids)]
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    spans = []
    for i, (p, row) in enumerate(zip(prompt_ids, rows)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        labels[i, len(p) : len(row)] = input_ids[i, len(p) : len(row)]
        spans.append((len(p), len(row)))
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "answer_spans": spans,
        "prompt_lengths": [len(p) for p in prompt_ids],
    }


Segment = tuple[str, bool]  # (text, trained on): False for text the runtime wrote, e.g. a tool's response


def encode_segments(
    tokenizer, prompts: Sequence[str], completions: Sequence[Sequence[Segment]], fmt: PromptFormat | None = None,
) -> dict[str, Any]:
    """`encode_pairs` for completions made of segments, some written by the model and some by the runtime.

    A tool-using answer interleaves the model's text (calls, the final answer) with the runtime's (tool
    responses): labels cover the model's segments and the terminator, never the runtime's, so neither
    supervised training nor policy gradient teaches the model to produce what a tool returns. Segments are
    tokenized one by one and concatenated, as generation sees them when the runtime appends a response.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    fmt = fmt or prompt_format(tokenizer)
    prompt_ids = fmt.encode_prompts(prompts)
    rows, targets = [], []
    for p, segments in zip(prompt_ids, completions):
        ids, train = list(p), [False] * len(p)
        texts = [t for t, _ in segments if t]
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        for piece, (_, trained) in zip(encoded, [s for s in segments if s[0]]):
            ids += piece
            train += [trained] * len(piece)
        ids.append(fmt.terminator_id)
        train.append(True)
        rows.append(ids)
        targets.append(train)
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (row, train) in enumerate(zip(rows, targets)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        mask = torch.tensor(train, dtype=torch.bool)
        labels[i, : len(row)] = torch.where(mask, input_ids[i, : len(row)], torch.full_like(mask, IGNORE_INDEX, dtype=torch.long))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "prompt_lengths": [len(p) for p in prompt_ids]}
