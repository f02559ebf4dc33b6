"""BM25 retrieval over knowledge-base statements finds the statement a fact question needs."""

import pytest

from agent_forge.errors import ForgeError
from agent_forge.stages.curriculum.retrieval import BM25Retriever


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
