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

A real chat model (SmolLM2-Instruct, Qwen) rarely answers with the bare reference: it writes a short preamble
and then the answer on its own final line. That final statement is what is scored when the whole reply is not
the answer by itself (`answer_statement`):

- the last line starts with a lead-in ("Answer: X", "The answer is X", "**Answer:** X", "**Final answer**: X"),
  or its last sentence does ("Reversing kwt gives twk. The answer is twk."), or the line before it ends with a
  colon and introduces it ("Here is the reversed string:" then "`twk`");
- the text before it (the preamble) is short (at most 300 characters) and states no other answer: a lead-in
  followed by anything there ("The answer is 5.\nAnswer: 6") makes the reply two answers, scored 0;
- the statement itself then goes through the same normalisation, so "Answer: 5 or 6", "Answer: 5, 6" and
  "Answer: 5 (I think)" still score 0, and an answer followed by more text ("231\nExplanation: ...") is not a
  final statement at all. A trailing end-of-turn token (`<|im_end|>`, `</s>`) is formatting.

The tiny profile's models are trained on bare answers and write no line breaks or lead-ins, so their scores do
not change: greedy replies of the default run's arithmetic specialist, evomerge and curriculum models to 400
suite items each were scored identically before and after this rule (none contained a line break).

Exercise it with:

    python -c "from agent_forge.tasks import make_tasks, verify; t = make_tasks('arithmetic', 3, 'test', 1, 0)[0]; print(t.answer, verify(t, 'The answer is ' + t.answer + '.'))"
"""

from __future__ import annotations

import re

from .base import Task

# A lead-in phrase, optionally in markdown bold ("**Answer:**", "**Answer**:"); phrases without "is" need a
# colon ("answer 231" is not a statement). Longest first, so "the final answer is" is removed whole.
_LEAD_IN = re.compile(
    r"(?P<bold>\*\*|__)?(?P<phrase>the final answer is|final answer is|the answer is|answer is|final answer|answer"
    r"|output|result)(?P<close>(?P=bold))?[ \t]*(?P<colon>:)?[ \t]*(?P<close2>(?P=bold))?",
    re.IGNORECASE,
)
_WRAPPERS = ("**", "`", '"', "'")
_SPACES = re.compile(r"\s+")
# End-of-turn tokens a decode may leave at the end of a chat reply (ChatML, Llama 3, sentencepiece eos).
_TRAILING_SPECIALS = re.compile(r"(?:\s*(?:<\|[A-Za-z_]{1,20}\|>|</s>))+\s*$")
# Where a sentence ends inside a line, so that the next one may be the reply's final statement.
_SENTENCE_END = re.compile(r"(?<=[.!])\s+")
# The most text a chat reply may write before its final statement and still count as a short preamble.
_MAX_PREAMBLE_CHARS = 300
# [0-9], not \d: \d also matches other scripts' digits ("١٠٠"), which are not a plain form here.
_PLAIN_DECIMAL = re.compile(r"([+-]?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")

# Domains whose answer is the exact text a case-preserving transformation produces.
_CASE_SENSITIVE_DOMAINS = frozenset({"strings"})
# Domains whose numeric answers are values written most-significant digit first. Not arithmetic: it writes
# values digits reversed, where no other plain form exists (see the module docstring).
_VALUE_DOMAINS = frozenset({"logic", "facts"})
# Task kinds (meta["kind"]) in those domains whose digits are a sequence, not one value.
_DIGIT_SEQUENCE_KINDS = frozenset({"sort"})


def _lead_in_length(text: str) -> int:
    """How many leading characters of `text` are an "answer:"-style lead-in (0 when it does not start with one)."""
    match = _LEAD_IN.match(text)
    if match is None:
        return 0
    bold, close, close2 = match.group("bold"), match.group("close"), match.group("close2")
    if bold:
        # the bold must close right after the phrase or its colon ("**Answer: 231**" is left to the wrappers)
        if bool(close) == bool(close2):
            return 0
    if not match.group("colon") and not match.group("phrase").lower().endswith(" is"):
        return 0
    return match.end()


def _strip_lead_in(text: str) -> str:
    """`text` without one leading "answer:"-style phrase, matched in any case."""
    length = _lead_in_length(text)
    return text[length:].strip() if length else text


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


def _states_an_answer(text: str) -> bool:
    """Whether `text` contains a lead-in followed by something (an answer stated in the preamble)."""
    for match in re.finditer(r"(?:\*\*|__)?\b(?:the |final |answer|output|result)", text, re.IGNORECASE):
        length = _lead_in_length(text[match.start():])
        if length and text[match.start() + length:].strip(" \t*_`.").strip():
            return True
    return False


def answer_statement(output: str) -> str | None:
    """The final statement of a chat reply with a short preamble (see the module docstring), or None when the
    reply has no such statement: then only the whole reply can be the answer."""
    text = _TRAILING_SPECIALS.sub("", output)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last, preamble = lines[-1], lines[:-1]
    statement = None
    if _lead_in_length(last):
        statement = last
    else:
        # the last sentence of the last line ("... gives twk. The answer is twk.")
        for boundary in reversed(list(_SENTENCE_END.finditer(last))):
            if _lead_in_length(last[boundary.end():]):
                statement = last[boundary.end():]
                preamble = preamble + [last[: boundary.start()]]
                break
    if statement is None:
        # a bare last line introduced by a colon ("Here is the reversed string:" / "**Answer:**")
        if not preamble or not preamble[-1].rstrip("*_ ").endswith(":"):
            return None
        statement = last
    if len("\n".join(preamble)) > _MAX_PREAMBLE_CHARS or any(_states_an_answer(line) for line in preamble):
        return None
    return statement


def verify(task: Task, output: str) -> float:
    """1.0 if the output states exactly the reference answer (up to formatting noise, letter case outside
    `strings`, and the plain decimal form of a value), by itself or as the final statement of a chat reply
    with a short preamble, else 0.0."""
    if not isinstance(output, str):
        raise TypeError(f"verify expects the model output as a str, got {type(output).__name__}")
    keep_case = task.domain in _CASE_SENSITIVE_DOMAINS
    reference = normalize_answer(task.answer, keep_case)
    if not reference:
        return 0.0
    if _same_answer(task, reference, normalize_answer(_TRAILING_SPECIALS.sub("", output), keep_case)):
        return 1.0
    statement = answer_statement(output)
    if statement is None:
        return 0.0
    return 1.0 if _same_answer(task, reference, normalize_answer(statement, keep_case)) else 0.0
