"""Fact recall over the generated knowledge base: one-fact questions up to six-fact multi-hop chains.

`where does the boss of the friend of keta live?` needs three facts (keta's friend, that person's boss,
the boss's town). Levels count the facts a question needs: 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, with yes/no
comparisons of two people (`is X older than the boss of Y?`) at levels 5, 7 and 10. The world is
`KnowledgeBase.build(world_seed)`; `make_tasks` passes its seed, so train and test ask about the same world
but never the same question. `meta["support"]` lists the passage ids holding the needed facts.
Exercise it with:

    python -c "import random; from agent_forge.tasks.facts import FactsDomain as D; print(D().sample(4, random.Random(0)))"
"""

from __future__ import annotations

import random

from .base import Domain
from .fastrand import pick
from .knowledge import PERSON_ATTRIBUTES, RELATIONS, KnowledgeBase

_QUESTIONS = {
    "city": "where does {p} live?",
    "color": "what color does {p} like?",
    "pet": "what pet does {p} have?",
    "job": "what job does {p} have?",
    "age": "how old is {p}?",
    "friend": "who is the friend of {p}?",
    "boss": "who is the boss of {p}?",
    "region": "in which region does {p} live?",
}
_COMPARISONS = {
    "age": "is {p} older than {q}?",
    "city": "do {p} and {q} live in the same city?",
}


def _phrase(name: str, relations: tuple[str, ...]) -> str:
    """`the boss of the friend of keta` for relations ("friend", "boss") applied to keta, innermost first."""
    text = name
    for relation in relations:
        text = f"the {relation} of {text}"
    return text


def _facts_needed(relations: tuple[str, ...], attribute: str) -> int:
    return len(relations) + (2 if attribute == "region" else 1)


class FactsDomain(Domain):
    name = "facts"

    # level -> ("chain", facts needed) or ("compare", relation hops on each side)
    _SPECS = {
        1: ("basic", 1),
        2: ("other", 1),
        3: ("chain", 2),
        4: ("chain", 3),
        5: ("compare", (0, 1)),
        6: ("chain", 4),
        7: ("compare", (1, 1)),
        8: ("chain", 5),
        9: ("chain", 6),
        10: ("compare", (2, 2)),
    }

    def describe_level(self, level: int) -> str:
        kind, size = self._SPECS[level]
        if kind == "basic":
            return "level 1: one fact: a person's town, colour or pet"
        if kind == "other":
            return "level 2: one fact: a person's job, age, friend or boss, or a town's region"
        if kind == "chain":
            return f"level {level}: a chain of {size} facts: friend/boss hops from a named person, then an attribute"
        facts = sum(size) + 2
        return f"level {level}: yes/no comparison (age or town) of two people reached by {size[0]}+{size[1]} hops ({facts} facts)"

    def draw(self, level, rng, world_seed):
        kb = KnowledgeBase.build(world_seed)
        kind, size = self._SPECS[level]
        if kind == "compare":
            return _comparison(kb, rng, size)
        if kind == "basic":
            name, relations, attribute = pick(rng, kb.names), (), pick(rng, ("city", "color", "pet"))
        elif kind == "other":
            if rng.random() < 0.1:
                town = pick(rng, kb.town_names)
                return f"town:{town}:region", lambda: _town_question(kb, town)
            name, relations, attribute = pick(rng, kb.names), (), pick(rng, ("job", "age", "friend", "boss"))
        else:
            attribute = pick(rng, PERSON_ATTRIBUTES)
            hops = size - (2 if attribute == "region" else 1)
            name, relations = pick(rng, kb.names), tuple(pick(rng, RELATIONS) for _ in range(hops))
        key = f"chain:{name}:{'.'.join(relations)}:{attribute}"
        return key, lambda: _chain_question(kb, name, relations, attribute)


def _chain_question(kb: KnowledgeBase, name: str, relations: tuple[str, ...], attribute: str):
    people = kb.follow(name, relations)
    holder = people[-1]
    answer = kb.attribute(holder, attribute)
    used = [kb.statement(p, r) for p, r in zip(people, relations)]
    support = [kb.passage_id(p) for p in people]
    if attribute == "region":  # a person's region is two facts: their town, and the town's region
        town = kb.attribute(holder, "city")
        used += [kb.statement(holder, "city"), kb.statement(town, "region")]
        support.append(kb.passage_id(town))
    else:
        used.append(kb.statement(holder, attribute))
    meta = {
        "kind": "chain", "attribute": attribute, "hops": len(relations),
        "work": _facts_needed(relations, attribute), "support": list(dict.fromkeys(support)),
    }
    return _QUESTIONS[attribute].format(p=_phrase(name, relations)), answer, " ".join(used), meta


def _town_question(kb: KnowledgeBase, town: str):
    meta = {"kind": "chain", "attribute": "region", "hops": 0, "work": 1, "support": [kb.passage_id(town)]}
    return f"in which region is {town}?", kb.towns[town], kb.statement(town, "region"), meta


def _comparison(kb: KnowledgeBase, rng: random.Random, hops: tuple[int, int]):
    attribute = pick(rng, ("age", "city"))
    sides = [(pick(rng, kb.names), tuple(pick(rng, RELATIONS) for _ in range(h))) for h in hops]
    if attribute == "city" and rng.random() < 0.5:
        # Two random people share a town about one time in ten; half the town questions are built to share
        # one, so that answering "no" alone scores about half.
        left_town = kb.people[kb.follow(*sides[0])[-1]].city
        same = kb.reaching(sides[1][1], left_town)
        if same:
            sides[1] = (pick(rng, same), sides[1][1])
    holders = [kb.follow(name, rel)[-1] for name, rel in sides]
    values = [getattr(kb.people[h], attribute) for h in holders]
    yes = values[0] > values[1] if attribute == "age" else values[0] == values[1]
    side_keys = [f"{name}:{'.'.join(rel)}" for name, rel in sides]
    if attribute == "city":  # "do X and Y live in the same city" is the same question as "do Y and X ..."
        side_keys.sort()
    key = f"compare:{attribute}:{side_keys[0]}:{side_keys[1]}"
    return key, lambda: _render_comparison(kb, attribute, sides, holders, values, yes, hops)


def _render_comparison(kb, attribute, sides, holders, values, yes, hops):
    used, support = [], []
    for (name, relations), holder in zip(sides, holders):
        people = kb.follow(name, relations)
        used += [kb.statement(p, r) for p, r in zip(people, relations)] + [kb.statement(holder, attribute)]
        support += [kb.passage_id(p) for p in people]
    left, right = values
    if attribute == "age":
        verdict = f"{left}>{right}"
    else:
        verdict = f"both in {left}" if yes else f"{left} vs {right}"
    answer = "yes" if yes else "no"
    (p_name, p_rel), (q_name, q_rel) = sides
    prompt = _COMPARISONS[attribute].format(p=_phrase(p_name, p_rel), q=_phrase(q_name, q_rel))
    meta = {
        "kind": "compare", "attribute": attribute, "hops": sum(hops), "work": sum(hops) + 2,
        "support": list(dict.fromkeys(support)),
    }
    return prompt, answer, " ".join(used) + f" {verdict} {answer}", meta
