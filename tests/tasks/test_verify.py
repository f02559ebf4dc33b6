"""The verifier forgives formatting noise, letter case outside `strings` and plain decimal forms of a value, and
nothing else: hedges, lists, embedded answers, other numbers and digit-reversed answers in another form score 0."""

import pytest

from agent_forge.tasks import DOMAINS, LEVELS, Task, make_tasks, normalize_answer, verify


def _task(answer: str, domain: str = "arithmetic", kind: str | None = None) -> Task:
    meta = {"kind": kind} if kind else {}
    return Task(task_id="t", domain=domain, level=1, prompt="p", answer=answer, meta=meta)


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
@pytest.mark.parametrize("domain", ["arithmetic", "facts", "logic"])  # digits reversed, and values
def test_hedges_lists_and_embedded_answers_score_zero(output, domain):
    assert verify(_task("231", domain), output) == 0.0


def test_words_case_and_yes_no():
    assert verify(_task("kelmar", "facts"), "Kelmar.") == 1.0
    assert verify(_task("kelmar", "facts"), "kelmar or befvik") == 0.0
    assert verify(_task("kelmar", "facts"), "he lives in kelmar") == 0.0
    assert verify(_task("yes", "facts"), "Yes") == 1.0
    assert verify(_task("yes", "facts"), "yes and no") == 0.0
    assert verify(_task("yes", "facts"), "no") == 0.0
    assert verify(_task("yes", "facts"), "yes/no") == 0.0
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
            case_matters = domain == "strings"  # every strings answer has letters, all lowercase
            assert verify(task, f"  {task.answer.upper()}\n") == (0.0 if case_matters else 1.0)
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


# Plain decimal forms of a value -----------------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["facts", "logic"])
@pytest.mark.parametrize(
    ("reference", "accepted", "rejected"),
    [
        ("100", ["100", "100.0", "100.00", "+100", "+100.000", "Answer: 100.0.", "**+100.0**", "100."],
         ["100.5", "100.05", "1000", "10", "-100", "1e2", "1E2", "0100", "00100.0", "100,0", "1,00", "1_00",
          "100.0.0", "100 .0", "100. 0", "++100", "+-100", "- 100", "100.0 or 100", "about 100.0", "0x64",
          "\u0661\u0660\u0660", "100.0e0", "100/1", "1 00", "100.0?", "one hundred"]),
        ("-3", ["-3", "-3.0", "-3.00", "answer: -3.0"], ["3", "+3", "3.0", "-3.1", "--3", "-03", "- 3", "-30"]),
        ("0", ["0", "0.0", "+0", "-0", "-0.00"], ["00", "0.01", "-0.1", ".0", "0..", "1", "o"]),
        ("0.5", ["0.5", "0.50", "+0.5"], [".5", "0.05", "5", "0.51", "-0.5", "00.5", "1/2"]),
    ],
)
def test_a_value_is_accepted_in_its_plain_decimal_forms_and_no_other(domain, reference, accepted, rejected):
    task = _task(reference, domain)
    assert [out for out in accepted if verify(task, out) != 1.0] == []
    assert [out for out in rejected if verify(task, out) != 0.0] == []


@pytest.mark.parametrize(
    ("reference", "rejected"),
    [
        # digits reversed: "001" is 100, so "1" is another number; "0010" is 0100, zero-padded
        ("001", ["1", "01", "0010", "001.0", "+001", "100", "1.00", "1e2"]),
        ("231", ["231.0", "231.00", "+231", "0231", "132", "132.0", "0.132"]),
        ("09", ["9", "90", "9.0", "09.0", "+09", "090"]),
    ],
)
def test_a_digits_reversed_answer_has_no_other_plain_form(reference, rejected):
    task = _task(reference, "arithmetic")
    assert verify(task, f"The answer is {reference}.") == 1.0
    assert [out for out in rejected if verify(task, out) != 0.0] == []


def test_sorted_digits_and_codes_are_digit_strings_not_values():
    sorted_digits = _task("0123", "logic", kind="sort")
    assert verify(sorted_digits, "0123") == 1.0
    assert [out for out in ["123", "0123.0", "+0123", "123.0"] if verify(sorted_digits, out) != 0.0] == []
    no_zero = _task("1234", "logic", kind="sort")
    assert [out for out in ["1234.0", "+1234", "01234"] if verify(no_zero, out) != 0.0] == []
    traced_value = _task("7", "logic", kind="trace")
    assert verify(traced_value, "7.0") == 1.0
    code = _task("05", "facts")  # a reference with a leading zero is not a plain decimal, so it is a code
    assert [out for out in ["5", "5.0", "05.0", "+05"] if verify(code, out) != 0.0] == []
    assert verify(_task("5", "strings"), "5.0") == 0.0  # strings answers are text, whatever they hold


def _is_value_answer(task: Task) -> bool:
    """What the generated tasks answer with a value: logic's max/min and traces, facts' ages."""
    return task.answer.isdigit() and task.domain in ("logic", "facts") and task.meta.get("kind") != "sort"


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_generated_answers_take_plain_forms_only_where_they_are_values(domain):
    values_seen = 0
    for level in LEVELS:
        for task in make_tasks(domain, level, "test", 20, 0):
            value = _is_value_answer(task)
            values_seen += value
            assert verify(task, task.answer + ".0") == (1.0 if value else 0.0)
            assert verify(task, "+" + task.answer) == (1.0 if value else 0.0)
            assert verify(task, task.answer + "0") == 0.0  # ten times the value (or, reversed, zero-padded)
            assert verify(task, "0" + task.answer) == 0.0  # zero-padded (or, reversed, ten times the value)
            assert verify(task, task.answer + ".5") == 0.0
            if task.answer.isdigit() and len(task.answer) > 1:
                assert verify(task, task.answer[::-1]) == 0.0 or task.answer == task.answer[::-1]
    assert (values_seen > 0) == (domain in ("logic", "facts"))


# Letter case --------------------------------------------------------------------------------------------------

def test_case_matters_for_strings_answers_only():
    mixed = _task("AbC", "strings")
    assert [out for out in ["AbC", " AbC. ", "Answer: AbC", "ANSWER: **AbC**.", "The answer is `AbC`"]
            if verify(mixed, out) != 1.0] == []
    assert [out for out in ["abc", "ABC", "aBc", "Abc", "answer: abc"] if verify(mixed, out) != 0.0] == []
    lower = _task("uxl", "strings")
    assert [out for out in ["UXL", "Uxl", "uxL", "The answer is UXL."] if verify(lower, out) != 0.0] == []
    assert verify(lower, "THE ANSWER IS uxl.") == 1.0  # the lead-in's case is formatting, not the answer
    # Names, yes/no and a pattern's next letter are the same answer in any case.
    assert verify(_task("kelmar", "facts"), "KELMAR") == 1.0
    assert verify(_task("yes", "facts"), "YES.") == 1.0
    assert verify(_task("t", "logic", kind="pattern"), "T") == 1.0
    assert verify(_task("t", "logic", kind="pattern"), "s") == 0.0


def test_normalize_answer_keeps_case_on_request():
    assert normalize_answer("  The Answer is:  **Kelmar**. ", keep_case=True) == "Kelmar"
    assert normalize_answer("RESULT: `AbC`", keep_case=True) == "AbC"
    assert normalize_answer("RESULT: `AbC`") == "abc"
