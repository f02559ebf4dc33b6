"""Every knowledge-base statement is its opening (what a search asks for) followed by the value."""

import pytest

from agent_forge.tasks import KnowledgeBase
from agent_forge.tasks.knowledge import PERSON_ATTRIBUTES


@pytest.mark.parametrize("seed", [0, 4])
def test_each_statement_is_its_opening_then_the_value(seed):
    kb = KnowledgeBase.build(seed)
    for name in kb.names:
        for attribute in PERSON_ATTRIBUTES[:-1]:
            opening, statement = kb.statement_opening(name, attribute), kb.statement(name, attribute)
            assert statement.startswith(opening + " " + kb.attribute(name, attribute))
    for town in kb.town_names:
        assert kb.statement(town, "region") == f"{kb.statement_opening(town, 'region')} {kb.towns[town]}."
    with pytest.raises(KeyError):
        kb.statement_opening(kb.names[0], "region")  # a person's region is two facts (city, then the town's)
