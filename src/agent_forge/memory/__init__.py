"""A persistent memory shared by agents and processes: SQLite (WAL) with a hybrid of BM25 (FTS5) and vectors
(sqlite-vec; MiniLM embeddings from the `memory` extra), and its tools for the model.

Exercise: `pytest tests/memory`; benchmark: `python benchmarks/bench_memory.py`.
"""

from .embed import HashingEmbedder, MiniLMEmbedder, make_embedder
from .store import MODES, Hit, MemoryStore, fts_query
from .tools import MEMORY_TOOLS, register_memory_tools

__all__ = ["HashingEmbedder", "Hit", "MEMORY_TOOLS", "MODES", "MemoryStore", "MiniLMEmbedder", "fts_query",
           "make_embedder", "register_memory_tools"]
