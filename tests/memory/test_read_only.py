"""A memory snapshot inside an agent folder: `save_agent` copies the store into one file, and an agent that only
searches opens it read-only, so the hashed bundle stays byte for byte what was written."""

from __future__ import annotations

import hashlib

import pytest

from agent_forge.errors import ForgeError
from agent_forge.memory import MemoryStore
from agent_forge.models.formats.tools import snapshot_store


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_snapshot_opened_read_only_searches_and_changes_nothing(tmp_path):
    live = tmp_path / "live.db"
    with MemoryStore(live, embedder=None) as store:
        store.write_many(["belenan lives in befvik.", "devu likes red."], [("kb",), ("kb",)])
        (tmp_path / "agent").mkdir()
        snapshot_store(live, tmp_path / "agent" / "memory.db")
        store.write("written after the snapshot.")  # the live store goes on; the snapshot does not see it
    snap = tmp_path / "agent" / "memory.db"
    before = _digest(snap)
    store = MemoryStore(snap, embedder=None, read_only=True)
    assert [h.text for h in store.search("where does belenan live?", 1, mode="bm25")] == ["belenan lives in befvik."]
    assert len(store) == 2
    with pytest.raises(ForgeError, match="read-only"):
        store.write("nope")
    store.close()
    assert _digest(snap) == before
    assert sorted(p.name for p in snap.parent.iterdir()) == ["memory.db"]  # no -wal / -shm sidecars


def test_read_only_refuses_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ForgeError, match="does not exist"):
        MemoryStore(tmp_path / "none.db", embedder=None, read_only=True)
    (tmp_path / "x.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ForgeError, match="not a memory store"):
        MemoryStore(tmp_path / "x.db", embedder=None, read_only=True)
