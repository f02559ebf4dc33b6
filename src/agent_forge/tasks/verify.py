"""Score a model's output against a task's reference answer.

The verifier forgives formatting noise (surrounding whitespace, a trailing period, quotes or bold markers
around the answer, a leading "answer:" / "the answer is" in any case) and nothing else: after that
normalisation the output must state the reference exactly. So hedges ("7 or 8", "maybe 7"), lists of
candidates ("7, 8") and the reference buried in other text all score 0. Two rules depend on the answer:

- Letter case is ignored, except in the `strings` domain: its answer is the exact output of case-preserving
  string functions (`reverse(kwt)` is `twk`, and `TWK` is another string). Elsewhere an answer names a thing
  (a person, a town, yes/no, a pattern's letter) that is the same thing in any case.
- A number in usual notation (logic's max/min and traced values, facts' ages) is accepted in any plain
  decimal form of the same value: an optional sign, the digits without leading zeros, an optional fractional
  part (`100` = `100.0` = `100.00` = `+100`, `0.5` = `0.50`, `-0` = `0`). Not `1e2`, `1,000`, `.5`, nor
  zero padding (`0100`: padding is not how a number is plainly written), nor another value (`100.5`, `1000`,
  `10`).
  Answers that are digit strings rather than values in usual notation are compared exactly:
  * arithmetic answers, written least-significant digit first (132 -> `231`). There, zeros at either end
    change the number or pad it (`001` is 100, not 1; `2310` is 0132, 132 zero-padded, rejected like `0100`),
    and a sign or decimal point has no agreed place (`231.0` read right to left is `0.132`), so the only
    plain form of the number is the reference's own digits;
  * logic's sorted digits (`0123` is a sequence of four digits; `123` and `0123.0` are other answers);
  * a reference that is not itself a plain decimal (a code such as `05`).

Exercise it with:

    python -c "from agent_forge.tasks import make_tasks, verify; t = make_tasks('arithmetic', 3, 'test', 1, 0)[0]; print(t.answer, verify(t, 'The answer is ' + t.answer + '.'))"
"""

from __future__ import annotations

import re

from .base import Task

# Longest first, so "the final answer is" is removed whole rather than leaving "final answer is" behind.
_LEAD_INS = (
    "the final answer is",
    "final answer:",
    "the answer is:",
    "the answer is",
    "answer is:",
    "answer is",
    "answer:",
    "output:",
    "result:",
)
_WRAPPERS = ("**", "`", '"', "'")
_SPACES = re.compile(r"\s+")
# [0-9], not \d: \d also matches other scripts' digits ("١٠٠"), which are not a plain form here.
_PLAIN_DECIMAL = re.compile(r"([+-]?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")

# Domains whose answer is the exact text a case-preserving transformation produces.
_CASE_SENSITIVE_DOMAINS = frozenset({"strings"})
# Domains whose numeric answers are values written most-significant digit first. Not arithmetic: it writes
# values digits reversed, where no other plain form exists (see the module docstring).
_VALUE_DOMAINS = frozenset({"logic", "facts"})
# Task kinds (meta["kind"]) in those domains whose digits are a sequence, not one value.
_DIGIT_SEQUENCE_KINDS = frozenset({"sort"})


def _strip_lead_in(text: str) -> str:
    """`text` without one leading "answer:"-style phrase, matched in any case."""
    lowered = text.lower()
    for lead in _LEAD_INS:
        # The lead-ins are ASCII, so a match means the first len(lead) characters of `text` are the lead-in.
        if lowered.startswith(lead):
            return text[len(lead):].strip()
    return text


def _strip_trailing_period(text: str) -> str:
    # ".." is not a sentence's full stop (an ellipsis, "231.."), so it is left for the comparison to reject.
    if text.endswith(".") and not text.endswith(".."):
        return text[:-1].rstrip()
    return text


def _strip_wrappers(text: str) -> str:
    for mark in _WRAPPERS:
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            text = text[len(mark):-len(mark)].strip()
    return text


def normalize_answer(text: str, keep_case: bool = False) -> str:
    """The canonical form that is compared: single spaces, formatting wrappers removed, lowercased unless
    `keep_case`. Lead-ins ("The answer is") are removed in any case either way."""
    text = _SPACES.sub(" ", text).strip()
    if not keep_case:
        text = text.lower()
    changed = True
    while changed:
        before = text
        text = _strip_wrappers(_strip_trailing_period(_strip_lead_in(text)))
        changed = text != before
    return text


def canonical_number(text: str) -> str | None:
    """`text` as the canonical decimal of its value ("+100.00" -> "100", "-0.50" -> "-0.5", "-0" -> "0"), or
    None when it is not a plain decimal (optional sign, digits without leading zeros, optional fraction)."""
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        return None
    sign, whole, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    magnitude = f"{whole}.{fraction}" if fraction else whole
    # -0 and +0 are the number 0, which carries no sign.
    return f"-{magnitude}" if sign == "-" and magnitude != "0" else magnitude


def _answers_with_a_value(task: Task) -> bool:
    """Whether a numeric answer of this task is a value in usual notation (so its plain forms are accepted)."""
    return task.domain in _VALUE_DOMAINS and task.meta.get("kind") not in _DIGIT_SEQUENCE_KINDS


def _same_answer(task: Task, reference: str, stated: str) -> bool:
    if stated == reference:
        return True
    if not _answers_with_a_value(task):
        return False
    reference_number = canonical_number(reference)
    return reference_number is not None and canonical_number(stated) == reference_number


def verify(task: Task, output: str) -> float:
    """1.0 if the output states exactly the reference answer (up to formatting noise, letter case outside
    `strings`, and the plain decimal form of a value), else 0.0."""
    if not isinstance(output, str):
        raise TypeError(f"verify expects the model output as a str, got {type(output).__name__}")
    keep_case = task.domain in _CASE_SENSITIVE_DOMAINS
    reference = normalize_answer(task.answer, keep_case)
    if not reference:
        return 0.0
    return 1.0 if _same_answer(task, reference, normalize_answer(output, keep_case)) else 0.0
