"""The verifier forgives formatting noise and nothing else: hedges, lists and embedded answers score 0."""

import pytest

from agent_forge.tasks import DOMAINS, LEVELS, Task, make_tasks, normalize_answer, verify


def _task(answer: str, domain: str = "arithmetic") -> Task:
    return Task(task_id="t", domain=domain, level=1, prompt="p", answer=answer)


@pytest.mark.parametrize(
    "output",
    ["231", " 231 ", "231\n", "231.", "Answer: 231", "answer:231", "The answer is 231.", "the answer is: 231",
     "The final answer is 231", "**231**", "`231`", '"231"', "Answer: **231**.", "ANSWER: 231", "\t231 .",
     "Result: 231", "Output: 231"],
)
def test_formatting_noise_is_forgiven(output):
    assert verify(_task("231"), output) == 1.0


@pytest.mark.parametrize(
    "output",
    ["", " ", ".", "answer:", "23", "2310", "132", "231 or 232", "232 or 231", "maybe 231", "231?", "231, 232",
     "231 232", "231 or so", "probably 231", "about 231", "~231", "231 (not sure)", "i think it is 231",
     "the sum is 231 and the answer is 231", "231\n232", "2 3 1", "-231", "231..", "x = 231", "answer: 23 1",
     "231231", "answer: 231 or 132", "answer: 7 or 8"],
)
def test_hedges_lists_and_embedded_answers_score_zero(output):
    assert verify(_task("231"), output) == 0.0


def test_words_case_and_yes_no():
    assert verify(_task("kelmar", "facts"), "Kelmar.") == 1.0
    assert verify(_task("kelmar", "facts"), "kelmar or befvik") == 0.0
    assert verify(_task("kelmar", "facts"), "he lives in kelmar") == 0.0
    assert verify(_task("yes", "facts"), "Yes") == 1.0
    assert verify(_task("yes", "facts"), "yes and no") == 0.0
    assert verify(_task("yes", "facts"), "no") == 0.0
    assert verify(_task("yes", "facts"), "yes/no") == 0.0
    assert verify(_task("uxl", "strings"), "UXL") == 1.0
    assert verify(_task("uxl", "strings"), "uxl lxu") == 0.0


def test_reversed_layout_is_not_confused_with_the_usual_one():
    task = make_tasks("arithmetic", 4, "test", 1, 0)[0]
    value = task.meta["value"]
    assert verify(task, task.answer) == 1.0
    if str(value) != task.answer:
        assert verify(task, str(value)) == 0.0  # the most-significant-first answer is a different string


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_reference_verifies_and_hedged_references_do_not(domain):
    for level in LEVELS:
        for task in make_tasks(domain, level, "test", 20, 0):
            assert verify(task, task.answer) == 1.0
            assert verify(task, f"The answer is {task.answer}.") == 1.0
            assert verify(task, f"  {task.answer.upper()}\n") == 1.0
            assert verify(task, f"{task.answer} or {task.answer}x") == 0.0
            assert verify(task, f"maybe {task.answer}") == 0.0
            assert verify(task, f"{task.answer}, {task.answer}") == 0.0
            assert verify(task, f"it is {task.answer}") == 0.0
            assert verify(task, task.prompt + " " + task.answer) == 0.0


def test_score_is_a_float_in_unit_interval_and_non_strings_are_rejected():
    task = _task("7")
    assert isinstance(verify(task, "7"), float)
    with pytest.raises(TypeError):
        verify(task, 7)
    assert normalize_answer("  The Answer is:  **Kelmar**. ") == "kelmar"
