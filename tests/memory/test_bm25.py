"""The in-memory BM25 retriever (moved from the curriculum to `memory`): ranking and exact, pinned scores."""

import pytest

from agent_forge.errors import ForgeError
from agent_forge.memory.bm25 import BM25Retriever


def test_bm25_ranks_the_matching_passage_first():
    passages = ["bob lives in zuma.", "ann lives in kora.", "bob has a cat.", "the sky is blue."]
    r = BM25Retriever(passages)
    assert r.search("where does ann live?", 1) == [1]
    top2 = r.search("what pet does bob have, a cat?", 2)
    assert top2[0] == 2 and top2[1] == 0


def test_rare_terms_weigh_more_than_common_ones():
    r = BM25Retriever(["a b c zeta", "a b c", "a b", "a"])
    assert r.search("a zeta", 1) == [0]


def test_empty_corpus_is_an_error():
    with pytest.raises(ForgeError):
        BM25Retriever([])


def test_scores_are_pinned_exactly():
    # the curriculum's retrieval prompts (its training data) depend on these numbers bit for bit
    r = BM25Retriever(["bob lives in zuma.", "ann lives in kora.", "bob has a cat.", "the sky is blue."])
    assert r.scores("what pet does bob have, a cat?") == [0.6931471805599453, 0, 3.101092789211817, 0]
    assert r.search("bob", 4) == [0, 2, 1, 3]  # ties keep passage order
