"""The canary: a fixed task set, scored by the verifier, falling when below the best of the recent runs."""

from agent_forge.interactions import CanaryPolicy, assess, canary_tasks, score


def test_the_canary_is_fixed_and_held_out():
    first, again = canary_tasks(6), canary_tasks(6)
    assert [t.task_id for t in first] == [t.task_id for t in again]
    assert {t.domain for t in first} == {"arithmetic", "strings", "logic"} and len(first) == 18
    assert {t.domain for t in canary_tasks(3, facts_world=0)} == {"arithmetic", "strings", "logic", "facts"}
    from agent_forge.tasks import split_of_task
    assert {split_of_task(t) for t in first} == {"test"}


def test_score_and_falling_rule():
    tasks = canary_tasks(3)
    outputs = [t.answer if t.domain == "arithmetic" else "wrong" for t in tasks]
    accuracy, by_domain = score(tasks, outputs)
    assert round(accuracy, 3) == round(100 / 3, 3) and by_domain == {"arithmetic": 100.0, "strings": 0.0, "logic": 0.0}
    policy = CanaryPolicy(tolerance=5.0, window=3)
    assert assess([], 50.0, policy) == (None, False)
    runs = [{"accuracy": a} for a in (90.0, 60.0, 70.0, 72.0)]
    assert assess(runs, 66.0, policy) == (72.0, True)  # the best of the last three is 72
    assert assess(runs, 68.0, policy) == (72.0, False)  # within the tolerance
