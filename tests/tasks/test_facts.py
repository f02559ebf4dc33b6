"""Facts: the world is fixed by the seed, and every answer follows from the world's own sentences."""

import re

import pytest

from agent_forge.errors import ForgeError
from agent_forge.tasks import LEVELS, KnowledgeBase, make_tasks

STATEMENT_PATTERNS = [
    (re.compile(r"^(\w+) lives in (\w+)\.$"), "city"),
    (re.compile(r"^(\w+) likes (\w+)\.$"), "color"),
    (re.compile(r"^(\w+) has a (\w+)\.$"), "pet"),
    (re.compile(r"^(\w+) works as a (\w+)\.$"), "job"),
    (re.compile(r"^(\w+) is (\d+) years old\.$"), "age"),
    (re.compile(r"^the friend of (\w+) is (\w+)\.$"), "friend"),
    (re.compile(r"^the boss of (\w+) is (\w+)\.$"), "boss"),
    (re.compile(r"^(\w+) is in the (\w+)\.$"), "region"),
]


def _fact_table(kb: KnowledgeBase) -> dict[tuple[str, str], str]:
    """Parse the statement sentences back into (entity, attribute) -> value; every sentence must parse."""
    table = {}
    for sentence in kb.statements():
        for pattern, attribute in STATEMENT_PATTERNS:
            match = pattern.match(sentence)
            if match:
                subject, value = match.groups()
                assert (subject, attribute) not in table, sentence
                table[subject, attribute] = value
                break
        else:
            raise AssertionError(f"unparsed statement {sentence!r}")
    return table


def _resolve(phrase: str, table) -> str:
    """`the boss of the friend of keta` -> the person it names."""
    relations = re.findall(r"the (friend|boss) of ", phrase)
    name = phrase.split()[-1]
    for relation in reversed(relations):
        name = table[name, relation]
    return name


QUESTIONS = [
    (re.compile(r"^where does (.+) live\?$"), "city"),
    (re.compile(r"^what color does (.+) like\?$"), "color"),
    (re.compile(r"^what pet does (.+) have\?$"), "pet"),
    (re.compile(r"^what job does (.+) have\?$"), "job"),
    (re.compile(r"^how old is (.+)\?$"), "age"),
    (re.compile(r"^who is the (friend|boss) of (.+)\?$"), None),
    (re.compile(r"^in which region does (.+) live\?$"), "region"),
    (re.compile(r"^in which region is (\w+)\?$"), "town-region"),
]


def _answer(question: str, table) -> str:
    if m := re.fullmatch(r"is (.+) older than (.+)\?", question):
        left, right = (int(table[_resolve(p, table), "age"]) for p in m.groups())
        return "yes" if left > right else "no"
    if m := re.fullmatch(r"do (.+) and (.+) live in the same city\?", question):
        left, right = (table[_resolve(p, table), "city"] for p in m.groups())
        return "yes" if left == right else "no"
    for pattern, attribute in QUESTIONS:
        if m := pattern.match(question):
            if attribute is None:
                relation, phrase = m.groups()
                return table[_resolve(phrase, table), relation]
            if attribute == "town-region":
                return table[m.group(1), "region"]
            person = _resolve(m.group(1), table)
            if attribute == "region":
                return table[table[person, "city"], "region"]
            return table[person, attribute]
    raise AssertionError(f"unparsed question {question!r}")


def test_world_is_fixed_by_seed_and_sentences_parse_back():
    a, b, c = KnowledgeBase.build(3), KnowledgeBase.build(3), KnowledgeBase.build(4)
    assert a.statements() == b.statements() and a.statements() != c.statements()
    table = _fact_table(a)
    assert len(a.names) == 60 and len(set(a.names)) == 60
    assert not set(a.names) & set(a.town_names)
    for name in a.names:
        assert table[name, "friend"] != name and table[name, "boss"] != name
        assert table[name, "city"] in a.town_names
    assert set(a.towns.values()) == {"north", "south", "east", "west"}
    assert len(KnowledgeBase.build(3, n_entities=10).names) == 10
    with pytest.raises(ForgeError):
        KnowledgeBase.build(0, n_entities=1)


def test_passages_hold_exactly_the_statements():
    kb = KnowledgeBase.build(0)
    passages = kb.passages()
    assert len({pid for pid, _ in passages}) == len(passages)
    sentences = [s.strip() + "." for text in (t for _, t in passages) for s in text.split(".") if s.strip()]
    assert sorted(sentences) == sorted(kb.statements())


@pytest.mark.parametrize("level", LEVELS)
def test_answers_follow_from_the_world_sentences(level):
    kb = KnowledgeBase.build(11)
    table = _fact_table(kb)
    passage_ids = {pid for pid, _ in kb.passages()}
    statements = set(kb.statements())
    for task in make_tasks("facts", level, "train", 150, seed=11):
        assert task.answer == _answer(task.prompt, table), task.prompt
        assert set(task.meta["support"]) <= passage_ids
        # the worked rationale is the world's own sentences (comparisons then add a verdict after the last one)
        sentences = re.findall(r"[^.]+\.", task.rationale)
        assert sentences and all(s.strip() in statements for s in sentences), task.rationale


def test_levels_count_the_facts_needed():
    expected = {1: 1, 2: 1, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4, 8: 5, 9: 6, 10: 6}
    for level, facts in expected.items():
        tasks = make_tasks("facts", level, "train", 100, seed=0)
        assert {t.meta["work"] for t in tasks} == {facts}
        assert all(t.rationale.count(".") == facts for t in tasks), level


def test_train_and_test_ask_about_the_same_world_but_never_the_same_question():
    train = make_tasks("facts", 3, "train", 400, seed=2)
    test = make_tasks("facts", 3, "test", 60, seed=2)
    names = set(KnowledgeBase.build(2).names)
    assert {t.meta["key"].split(":")[1] for t in train + test} <= names
    assert not {t.prompt for t in train} & {t.prompt for t in test}


def test_yes_no_levels_are_balanced():
    for level in (5, 7, 10):
        tasks = make_tasks("facts", level, "train", 600, seed=0)
        yes = sum(t.answer == "yes" for t in tasks) / len(tasks)
        assert 0.35 < yes < 0.65, (level, yes)
