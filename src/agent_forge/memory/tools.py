"""The memory as tools the model calls: `memory_search(query, k)` and `memory_write(text, tags)`."""

from __future__ import annotations

from typing import Sequence

from .store import MemoryStore

MEMORY_TOOLS = ("memory_search", "memory_write")
MAX_K = 20


def register_memory_tools(registry, store: MemoryStore, names: Sequence[str] = MEMORY_TOOLS, *, default_k: int = 5):
    """Add the memory tools (all, or those in `names`) over `store` to a `tools.ToolRegistry`; a search that
    names no k returns `default_k` passages."""

    def memory_search(query: str, k: int = default_k) -> str:
        """Search the shared memory for the passages most relevant to a query.

        Args:
            query: What to look for, in words.
            k: How many passages to return (1 to 20).
        """
        hits = store.search(query, max(1, min(int(k), MAX_K)))
        return " | ".join(hit.text for hit in hits) if hits else "no results"

    def memory_write(text: str, tags: list[str] = None) -> str:
        """Store a passage in the shared memory for later searches.

        Args:
            text: The passage to remember.
            tags: Optional labels for the passage.
        """
        if not text.strip():
            raise ValueError("nothing to store")
        if tags is not None and not all(isinstance(t, str) for t in tags):
            raise ValueError("tags must be strings")
        return f"stored as {store.write(text, tags or ())}"

    for function in (memory_search, memory_write):
        if function.__name__ in names:
            registry.add(function)
    return registry
