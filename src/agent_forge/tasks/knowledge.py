"""A generated world of fictional people and towns: the knowledge behind the `facts` domain.

Each person has a town, a favourite colour, a pet, a job, an age, a friend and a boss (both other people);
each town lies in a region. `statements()` gives every fact as a short sentence (pretraining text), and
`passages()` groups them per person and per town for retrieval. The same seed always builds the same world.
Exercise it with:

    python -c "from agent_forge.tasks.knowledge import KnowledgeBase; kb = KnowledgeBase.build(0); print(kb.statements()[:8])"
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ForgeError

COLORS = ("red", "blue", "green", "yellow", "white", "black", "pink", "gray")
PETS = ("cat", "dog", "fox", "frog", "goat", "crow", "bee", "hen")
JOBS = ("baker", "smith", "pilot", "nurse", "farmer", "poet", "judge", "miner")
REGIONS = ("north", "south", "east", "west")
RELATIONS = ("friend", "boss")
# Attributes a question can ask about a person; "region" goes through the person's town.
PERSON_ATTRIBUTES = ("city", "color", "pet", "job", "age", "friend", "boss", "region")
DEFAULT_ENTITIES = 60

_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = "nrls"
_TOWN_ENDINGS = ("mar", "dor", "holm", "vik", "wick", "ford")
# Words the question and statement templates use; a name equal to one would make a prompt ambiguous.
_RESERVED = set(
    "where does live lives what color like likes pet have has how old is who the friend of boss in which region "
    "older than do and same city yes no works as a years".split()
) | set(COLORS) | set(PETS) | set(JOBS) | set(REGIONS)
# Each statement is "<opening> <value>."; a town's only fact is its region.
_OPENINGS = {
    "city": "{name} lives in", "color": "{name} likes", "pet": "{name} has a", "job": "{name} works as a",
    "age": "{name} is", "friend": "the friend of {name} is", "boss": "the boss of {name} is", "region": "{name} is in the",
}
_AGE_SUFFIX = " years old"


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    color: str
    pet: str
    job: str
    age: int
    friend: str
    boss: str


def _person_name(rng: random.Random) -> str:
    syllables = rng.choice((2, 2, 3))
    name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    return name + (rng.choice(_CODAS) if rng.random() < 0.5 else "")


def _town_name(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_ONSETS) + rng.choice(_TOWN_ENDINGS)


def _unique_names(rng: random.Random, count: int, make, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = make(rng)
        if name not in taken and name not in _RESERVED:
            taken.add(name)
            names.append(name)
    return names


class KnowledgeBase:
    """A fixed world; build it with `KnowledgeBase.build(seed)` (cached per seed and size)."""

    def __init__(self, seed: int, people: dict[str, Person], towns: dict[str, str]):
        self.seed = seed
        self.people = people  # name -> Person, in creation order
        self.towns = towns  # town -> region
        self.names = tuple(people)
        self.town_names = tuple(towns)
        self._reach_index: dict[tuple[str, ...], dict[str, list[str]]] = {}

    @classmethod
    def build(cls, seed: int, n_entities: int = DEFAULT_ENTITIES) -> KnowledgeBase:
        if isinstance(n_entities, bool) or not isinstance(n_entities, int) or n_entities < 3:
            raise ForgeError(f"a knowledge base needs at least 3 entities, got n_entities={n_entities!r}")
        return _build_cached(int(seed), n_entities)

    # Queries ----------------------------------------------------------------------------------------------
    def attribute(self, name: str, attribute: str) -> str:
        """The value of one attribute of a person (or `region` of a town, if `name` is a town)."""
        if name in self.towns:
            if attribute != "region":
                raise KeyError(f"towns only have a region, not {attribute!r}")
            return self.towns[name]
        person = self.people[name]
        if attribute == "region":
            return self.towns[person.city]
        return str(getattr(person, attribute))

    def follow(self, name: str, relations: list[str] | tuple[str, ...]) -> list[str]:
        """The people visited following `relations` from `name` (first element is `name` itself)."""
        visited = [name]
        for relation in relations:
            visited.append(getattr(self.people[visited[-1]], relation))
        return visited

    def reaching(self, relations: tuple[str, ...], town: str) -> list[str]:
        """The people whose `relations` chain ends at someone living in `town` (cached per chain)."""
        index = self._reach_index.get(relations)
        if index is None:
            index = {}
            for name in self.names:
                index.setdefault(self.people[self.follow(name, relations)[-1]].city, []).append(name)
            self._reach_index[relations] = index
        return index.get(town, [])

    def statement(self, name: str, attribute: str) -> str:
        """The sentence stating one fact; the wording the questions are drawn from."""
        value = self.attribute(name, attribute) + (_AGE_SUFFIX if attribute == "age" and name not in self.towns else "")
        return f"{self.statement_opening(name, attribute)} {value}."

    def statement_opening(self, name: str, attribute: str) -> str:
        """The words of a fact's sentence before its value ("the boss of keta is"): what a search for that fact
        asks for, the sentence the searcher expects to find, as it would start."""
        key = "region" if name in self.towns else attribute
        if key not in _OPENINGS or (key == "region" and name not in self.towns):
            raise KeyError(f"no statement of {attribute!r} for {name!r}")
        return _OPENINGS[key].format(name=name)

    def statements(self) -> list[str]:
        """Every fact as one short sentence, people first (in a fixed order), then towns."""
        facts = [self.statement(name, attr) for name in self.names for attr in PERSON_ATTRIBUTES[:-1]]
        return facts + [self.statement(town, "region") for town in self.town_names]

    def passages(self) -> list[tuple[str, str]]:
        """Retrieval units: one passage per person (all their facts) and one per town, as (id, text)."""
        people = [
            (self.passage_id(name), " ".join(self.statement(name, a) for a in PERSON_ATTRIBUTES[:-1]))
            for name in self.names
        ]
        return people + [(self.passage_id(town), self.statement(town, "region")) for town in self.town_names]

    def passage_id(self, name: str) -> str:
        """Id of the passage holding the facts about a person (`person:<name>`) or a town (`town:<name>`)."""
        return f"town:{name}" if name in self.towns else f"person:{name}"

    def __repr__(self) -> str:
        return f"KnowledgeBase(seed={self.seed}, people={len(self.people)}, towns={len(self.towns)})"


@lru_cache(maxsize=16)
def _build_cached(seed: int, n_entities: int) -> KnowledgeBase:
    rng = random.Random(f"knowledge-base|{seed}|{n_entities}")
    taken: set[str] = set()
    n_towns = max(4, n_entities // 6)
    towns = _unique_names(rng, n_towns, _town_name, taken)
    names = _unique_names(rng, n_entities, _person_name, taken)
    # Every region gets at least one town so all four answers occur.
    regions = [REGIONS[i % len(REGIONS)] for i in range(n_towns)]
    rng.shuffle(regions)
    people = {}
    for name in names:
        people[name] = Person(
            name=name,
            city=rng.choice(towns),
            color=rng.choice(COLORS),
            pet=rng.choice(PETS),
            job=rng.choice(JOBS),
            age=rng.randint(20, 69),
            friend=_someone_else(rng, names, name),
            boss=_someone_else(rng, names, name),
        )
    return KnowledgeBase(seed, people, dict(zip(towns, regions)))


def _someone_else(rng: random.Random, names: list[str], name: str) -> str:
    while True:
        other = rng.choice(names)
        if other != name:
            return other
