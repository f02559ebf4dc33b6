"""Memory retrieval: recall@5 on the knowledge base (BM25 vs MiniLM vectors vs hybrid), and search speed over
10,000 entries.

    HF_HUB_OFFLINE=1 python benchmarks/bench_memory.py [--seed 0] [--questions 50] [--entries 10000] [--queries 200]

Recall: the world's passages (`KnowledgeBase.build(seed).passages()`, one per person and per town) are written
to a fresh store; for `facts` test questions of every level, `hit@5` is the share of questions whose first
supporting passage (the person the question names) is among the top 5, and `support@5` the mean share of all
supporting passages found (multi-hop questions name only the first person, so later hops are not findable from
the question alone; that is what the agent's repeated `memory_search` calls are for).
Speed: the store is filled to `--entries` items (knowledge-base statements of further worlds), and the median
wall time of `search(query, 5)` per mode is measured (the vector and hybrid times include embedding the query
with MiniLM; `vector (pre-embedded)` is the index alone). Needs the `memory` extra.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from agent_forge.memory import MemoryStore, MiniLMEmbedder
from agent_forge.tasks import KnowledgeBase, make_tasks

MODES = ("bm25", "vector", "hybrid")


def recall(store: MemoryStore, seed: int, questions: int) -> dict[str, dict[str, float]]:
    ids = {}
    for item_id, passage in KnowledgeBase.build(seed).passages():
        ids[store.write(passage, tags=[item_id, "kb"])] = item_id
    rows = {}
    groups = {"levels 1-2 (one fact)": (1, 2), "levels 1-10": tuple(range(1, 11))}
    for label, levels in groups.items():
        tasks = [t for level in levels for t in make_tasks("facts", level, "test", questions, seed, world_seed=seed)]
        for mode in MODES:
            hit, support = 0, 0.0
            for task in tasks:
                found = {h.tags[0] for h in store.search(task.prompt, 5, mode=mode, tag="kb")}
                wanted = task.meta["support"]
                hit += wanted[0] in found
                support += sum(w in found for w in wanted) / len(wanted)
            rows.setdefault(label, {})[mode] = (100 * hit / len(tasks), 100 * support / len(tasks), len(tasks))
    return rows


def speed(store: MemoryStore, entries: int, queries: int, seed: int) -> dict[str, float]:
    texts, world = [], seed + 1
    while len(store) + len(texts) < entries:
        texts += KnowledgeBase.build(world).statements()
        world += 1
    texts = texts[: entries - len(store)]
    start = time.perf_counter()
    for chunk in range(0, len(texts), 500):
        store.write_many(texts[chunk:chunk + 500])
    fill = time.perf_counter() - start
    prompts = [t.prompt for level in range(1, 11) for t in make_tasks("facts", level, "test", queries, seed + 7, world_seed=seed)]
    prompts = prompts[:queries]
    results = {"entries": len(store), "fill_s": fill}
    for mode in MODES:
        store.search(prompts[0], 5, mode=mode)  # warm up
        times = []
        for prompt in prompts:
            begin = time.perf_counter()
            store.search(prompt, 5, mode=mode)
            times.append(time.perf_counter() - begin)
        results[mode] = statistics.median(times) * 1000
    vectors = store.embedder.encode(prompts)
    times = []
    for vector in vectors:
        begin = time.perf_counter()
        store.nearest(vector, 5)
        times.append(time.perf_counter() - begin)
    results["vector (pre-embedded)"] = statistics.median(times) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions", type=int, default=50, help="test questions per level")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        store = MemoryStore(Path(folder) / "memory.db", embedder=MiniLMEmbedder())
        rows = recall(store, args.seed, args.questions)
        print(f"recall on knowledge base seed {args.seed} ({len(store)} passages), top 5, facts test questions:")
        print(f"{'questions':<24}{'mode':<8}{'hit@5':>8}{'support@5':>11}{'n':>6}")
        for label, modes in rows.items():
            for mode, (hit, support, n) in modes.items():
                print(f"{label:<24}{mode:<8}{hit:>7.1f}%{support:>10.1f}%{n:>6}")
        results = speed(store, args.entries, args.queries, args.seed)
        print(f"\nsearch over {results['entries']} entries (filled in {results['fill_s']:.1f} s, "
              f"{args.threads} thread(s)), median of {args.queries} queries, k=5:")
        for mode in (*MODES, "vector (pre-embedded)"):
            print(f"  {mode:<24}{results[mode]:8.2f} ms")
        print(f"integrity_check: {store.integrity_check()}")


if __name__ == "__main__":
    main()
