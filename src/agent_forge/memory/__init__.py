"""A persistent memory shared by agents and processes: SQLite (WAL) with a hybrid of BM25 (FTS5) and vectors
(sqlite-vec; MiniLM or the agent's own hidden states as embeddings), its tools for the model, and the
in-memory BM25 retriever over fixed passages (`bm25`, the curriculum's retrieval tasks).

Exercise: `pytest tests/memory`; benchmark: `python benchmarks/bench_memory.py`.
"""

from .bm25 import BM25Retriever
from .embed import DEFAULT_EMBEDDER, AgentEmbedder, HashingEmbedder, MiniLMEmbedder, make_embedder
from .store import MODES, Hit, MemoryStore, fts_query
from .tools import MEMORY_TOOLS, register_memory_tools

__all__ = ["AgentEmbedder", "BM25Retriever", "DEFAULT_EMBEDDER", "HashingEmbedder", "Hit", "MEMORY_TOOLS", "MODES",
           "MemoryStore", "MiniLMEmbedder", "fts_query", "make_embedder", "register_memory_tools"]
