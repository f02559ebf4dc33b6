"""A small in-memory BM25 retriever over a fixed list of passages (no SQLite): the curriculum's
retrieval-augmented tasks rank knowledge-base statements with it.

Passages and queries are split into lower-case word tokens; a passage's score is the BM25 sum over the query's
terms (k1 = 1.5, b = 0.75, the usual defaults). The store's own BM25 (`MemoryStore.bm25`, SQLite FTS5) ranks a
persistent, growing memory; this one is pure Python so its scores are exactly reproducible (the curriculum's
prompts, and so its training data, depend on them: keep the arithmetic as it is).

    retriever = BM25Retriever(["bob lives in zuma.", "ann lives in kora."])
    retriever.search("where does ann live?", 1)   # [1]

Exercise: `pytest tests/memory/test_bm25.py`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from ..errors import ForgeError

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25Retriever:
    """Okapi BM25 over a fixed list of passages."""

    def __init__(self, passages: Sequence[str], k1: float = 1.5, b: float = 0.75):
        if not passages:
            raise ForgeError("the retriever needs at least one passage")
        self.passages = list(passages)
        self.k1, self.b = k1, b
        self._tf = [Counter(words(p)) for p in self.passages]
        self._len = [sum(tf.values()) for tf in self._tf]
        self._avg_len = sum(self._len) / len(self._len) or 1.0
        df = Counter(term for tf in self._tf for term in tf)
        n = len(self.passages)
        # the +1 inside the log keeps idf positive for terms found in most passages
        self._idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = words(query)
        out = []
        for tf, length in zip(self._tf, self._len):
            norm = self.k1 * (1 - self.b + self.b * length / self._avg_len)
            out.append(sum(self._idf.get(t, 0.0) * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in terms if t in tf))
        return out

    def search(self, query: str, k: int = 3) -> list[int]:
        """Indices of the `k` best passages, best first (ties broken by passage order, deterministically)."""
        scored = self.scores(query)
        return sorted(range(len(scored)), key=lambda i: (-scored[i], i))[:k]
