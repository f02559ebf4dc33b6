"""A real chat model's reply is scored on its final statement: a short preamble, then "Answer: X" (or "The answer
is X", or a line introduced by a colon), markdown bold and backticks forgiven. Hedges, lists, two answers, an
answer followed by more text and the reference buried in prose still score 0."""

import pytest

from agent_forge.tasks import DOMAINS, LEVELS, Task, make_tasks, verify
from agent_forge.tasks.verify import answer_statement


def _task(answer: str, domain: str = "arithmetic", kind: str | None = None) -> Task:
    meta = {"kind": kind} if kind else {}
    return Task(task_id="t", domain=domain, level=1, prompt="p", answer=answer, meta=meta)


@pytest.mark.parametrize(
    "output",
    [
        "Sure! Let me work it out.\n\nAnswer: 231",
        "Reversing the digits of 132 gives 231.\nThe answer is 231.",
        "Reversing the digits gives it. The answer is 231.",
        "Here is the result:\n\n**231**",
        "Here is the result:\n`231`",
        "**Answer:** 231",
        "**Answer**: 231",
        "**Final answer:** `231`",
        "Let me think.\n**Answer:**\n231",
        "We add the numbers digit by digit.\nFinal answer: **231**.",
        "The final answer is 231<|im_end|>",
        "Answer: 231</s>",
        "Let me compute.\n\nThe answer is: **231**.<|im_end|>\n",
        "I computed it carefully.\nANSWER: 231",
    ],
)
def test_a_chat_reply_with_a_short_preamble_and_a_final_answer_line(output):
    assert verify(_task("231"), output) == 1.0


@pytest.mark.parametrize(
    "output",
    [
        "Let me think.\nAnswer: 231 or 232",          # hedge on the answer line
        "Let me think.\nAnswer: maybe 231",
        "Let me think.\nThe answer is 231, 232.",     # a list of candidates
        "Candidates:\n231, 232",
        "Candidates:\n- 231\n- 232",
        "The answer is 232.\nAnswer: 231",            # two answers: the preamble already states one
        "Answer: 232\nAnswer: 231",
        "**Answer:** 232. The answer is 231.",
        "231\nExplanation: the digits reversed.",     # the answer is not the final statement
        "Answer: 231\nI hope this helps!",
        "The sum is 231 and the answer is 231",       # buried in prose
        "I think it is 231.",
        "Reversing gives 231, so 231 it is.",
        "Let me think.\n231",                          # a bare last line not introduced by a colon
        "x:\n231 (not sure)",
        "Answer: 231 (I think)",
        "answer 231",                                  # a noun lead-in needs its colon
        "Result 231",
        "**Answer: 231",                               # unbalanced bold
        "Answer:** 231",
        ("word " * 80) + "\nAnswer: 231",              # a long text before the answer is not a short preamble
        "Some reasoning. the answer is 231 or 232.",
    ],
)
@pytest.mark.parametrize("domain", ["arithmetic", "facts", "logic"])
def test_chat_traps_score_zero(output, domain):
    assert verify(_task("231", domain), output) == 0.0


def test_case_and_values_follow_the_domain_rules_on_the_final_statement():
    mixed = _task("AbC", "strings")
    assert verify(mixed, "Here is the string:\n`AbC`") == 1.0
    assert verify(mixed, "Here is the string:\n`ABC`") == 0.0
    assert verify(_task("kelmar", "facts"), "Let me look it up.\nThe answer is **Kelmar**.") == 1.0
    assert verify(_task("100", "facts"), "Adding the years.\nAnswer: 100.0") == 1.0
    assert verify(_task("001", "arithmetic"), "Reversed digits.\nAnswer: 1") == 0.0


def test_answer_statement_is_none_without_a_final_statement():
    assert answer_statement("231") is None
    assert answer_statement("") is None
    assert answer_statement("Let me think.\nAnswer: 231") == "Answer: 231"
    assert answer_statement("Here:\n231") == "231"
    assert answer_statement("Done. The answer is 231.") == "The answer is 231."


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_reference_verifies_in_a_chat_reply_and_buried_or_hedged_ones_do_not(domain):
    for level in LEVELS:
        for task in make_tasks(domain, level, "test", 10, 0):
            assert verify(task, f"Let me solve it.\n\nAnswer: {task.answer}") == 1.0
            assert verify(task, f"Here is my answer:\n**{task.answer}**<|im_end|>") == 1.0
            assert verify(task, f"Let me solve it.\nAnswer: {task.answer} or {task.answer}x") == 0.0
            assert verify(task, f"Answer: {task.answer}x\nAnswer: {task.answer}") == 0.0
            assert verify(task, f"{task.prompt}\n{task.answer}") == 0.0
            assert verify(task, f"{task.prompt}:\n{task.answer}x") == 0.0
