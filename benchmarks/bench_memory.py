"""Memory retrieval: recall@1/@5 on the knowledge base per embedder (MiniLM in bf16 and fp32, the agent's own
hidden states per layer) and mode (BM25, vectors, hybrid), and search speed over 10,000 entries.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_memory.py [--seed 0] [--questions 50]
        [--entries 10000] [--queries 200] [--threads 1] [--agent runs/tiny/05-experts/model] [--layers all]
        [--steps]

Recall: the world's passages (`KnowledgeBase.build(seed).passages()`, one per person and per town) are written
to a fresh store per embedder; for `facts` test questions of every level, `hit@k` is the share of questions whose
first supporting passage (`meta["support"][0]`, the person the question names) is among the top k, and
`support@5` the mean share of all supporting passages found (multi-hop questions name only the first person,
so later hops are not findable from the question alone; that is what repeated `memory_search` calls are for).
The agent embedder mean-pools one layer of the agent at `--agent` (skipped when the folder is missing); the
line `default embedder` states which embedder measures better on vector hit@5 (then hit@1) and whether that
is `memory.DEFAULT_EMBEDDER`.

Search steps (`--steps`): the tools stage's store holds one statement per fact
(`KnowledgeBase.statements()`); each search step of the facts programs (`stages.tools.traces.facts_program`)
over the test questions of every level asks for the opening of the statement it needs ("the boss of keta is");
`hit@1` is the share of steps whose statement comes first, per mode, with and without the exact-phrase ranking
(`MemoryStore.search(phrase_first=...)`): one passage per search (`tools.memory_k: 1`) is enough only if this
is 100%.

Speed: the store is filled to `--entries` items (knowledge-base statements of further worlds), and the median
wall time of `search(query, 5)` per mode is measured over distinct queries with the query cache off (every
vector and hybrid query embeds its text with MiniLM). The breakdown lines give the query embedding alone per
precision, and the index alone: the in-process numpy mirror (what `search` uses) and sqlite-vec's own scan.
Needs the `memory` extra.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from agent_forge.memory import DEFAULT_EMBEDDER, AgentEmbedder, MemoryStore, MiniLMEmbedder
from agent_forge.tasks import KnowledgeBase, make_tasks

MODES = ("bm25", "vector", "hybrid")
GROUPS = {"levels 1-2 (one fact)": (1, 2), "levels 1-10": tuple(range(1, 11))}


def medians_ms(actions: dict, items: list) -> dict[str, float]:
    """Median wall time of each action over `items`, in ms. The actions take turns on each item, so a load that
    comes and goes on a shared machine weighs on all of them alike (their medians stay comparable)."""
    times = {name: [] for name in actions}
    for action in actions.values():
        action(0)  # warm up (first calls allocate, the mirror loads)
    for index in range(len(items)):
        for name, action in actions.items():
            begin = time.perf_counter()
            action(index)
            times[name].append(time.perf_counter() - begin)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def recall(embedder, path: Path, seed: int, questions: int, modes=MODES) -> dict[str, dict[str, tuple]]:
    """{group: {mode: (hit@1, hit@5, support@5, n)}} in percent, from a fresh store at `path`."""
    store = MemoryStore(path, embedder=embedder)
    for item_id, passage in KnowledgeBase.build(seed).passages():
        store.write(passage, tags=[item_id, "kb"])
    rows = {}
    for label, levels in GROUPS.items():
        tasks = [t for level in levels for t in make_tasks("facts", level, "test", questions, seed, world_seed=seed)]
        for mode in modes:
            hit1, hit5, support = 0, 0, 0.0
            for task in tasks:
                found = [h.tags[0] for h in store.search(task.prompt, 5, mode=mode, tag="kb")]
                wanted = task.meta["support"]
                hit1 += wanted[0] in found[:1]
                hit5 += wanted[0] in found
                support += sum(w in found for w in wanted) / len(wanted)
            n = len(tasks)
            rows.setdefault(label, {})[mode] = (100 * hit1 / n, 100 * hit5 / n, 100 * support / n, n)
    store.close()
    return rows


def step_recall(embedder, path: Path, seed: int, questions: int) -> dict[tuple[str, bool], tuple[float, int]]:
    """{(mode, phrase_first): (hit@1 %, steps)} over the search steps of the facts test questions."""
    from agent_forge.stages.tools.traces import facts_program

    kb = KnowledgeBase.build(seed)
    store = MemoryStore(path, embedder=embedder)
    store.write_many(kb.statements())
    steps = [step for level in range(1, 11)
             for task in make_tasks("facts", level, "test", questions, seed, world_seed=seed)
             for step in (facts_program(task.prompt, kb) or ([], None))[0]]
    rows = {}
    for mode in MODES:
        for phrase_first in (False, True):
            if mode == "vector" and phrase_first:
                continue  # the phrase ranking is lexical: vector search has none
            right = sum(store.search(s.query, 1, mode=mode, phrase_first=phrase_first)[0].text == s.needed
                        for s in steps)
            rows[(mode, phrase_first)] = (100 * right / len(steps), len(steps))
    store.close()
    return rows


def speed(path: Path, entries: int, queries: int, seed: int) -> dict[str, float]:
    embedder = MiniLMEmbedder(cache_size=0)  # every query is embedded: the uncached cost is what is measured
    store = MemoryStore(path, embedder=embedder)
    texts, world = [], seed + 1
    while len(store) + len(texts) < entries:
        texts += KnowledgeBase.build(world).statements()
        world += 1
    texts = texts[: entries - len(store)]
    start = time.perf_counter()
    for chunk in range(0, len(texts), 500):
        store.write_many(texts[chunk:chunk + 500])
    fill = time.perf_counter() - start
    prompts = [t.prompt for level in range(1, 11) for t in make_tasks("facts", level, "test", queries, seed + 7,
                                                                       world_seed=seed)]
    prompts = list(dict.fromkeys(prompts))[:queries]  # distinct queries
    results = {"entries": len(store), "fill_s": fill, "queries": len(prompts)}
    vectors = list(embedder.encode(prompts))
    scan = MemoryStore(path, embedder=embedder, mirror=False)
    actions = {mode: (lambda i, mode=mode: store.search(prompts[i], 5, mode=mode)) for mode in MODES}
    # the exact-phrase ranking is one more FTS5 query per lexical search: its cost, side by side
    actions["hybrid, no phrase ranking"] = lambda i: store.search(prompts[i], 5, phrase_first=False)
    actions[f"query embedding ({embedder.resolved_precision()})"] = lambda i: embedder.encode([prompts[i]])
    if embedder.resolved_precision() != "fp32":
        fp32 = MiniLMEmbedder(precision="fp32", cache_size=0)
        actions["query embedding (fp32)"] = lambda i: fp32.encode([prompts[i]])
    actions["index: numpy mirror"] = lambda i: store.nearest(vectors[i], 5)
    actions["index: sqlite-vec scan"] = lambda i: scan.nearest(vectors[i], 5)
    results.update(medians_ms(actions, prompts))
    results["integrity"] = store.integrity_check()
    scan.close()
    store.close()
    return results


def agent_layers(path: str, spec: str) -> list[int]:
    import json

    layers = json.loads((Path(path) / "config.json").read_text())["num_hidden_layers"]
    return list(range(layers + 1)) if spec == "all" else [int(x) for x in spec.split(",")]


def recall_tables(args, folder: Path) -> None:
    """Recall per embedder and mode, and which embedder measures better (the default's justification)."""
    embedders = {"minilm": MiniLMEmbedder(), "minilm fp32": MiniLMEmbedder(precision="fp32")}
    if Path(args.agent).is_dir():
        from agent_forge.models import load_agent

        agent = load_agent(args.agent)
        for layer in agent_layers(args.agent, args.layers):
            embedders[f"agent layer {layer}"] = AgentEmbedder(agent, layer=layer)
    else:
        print(f"(no agent at {args.agent}: the hidden-state embedder is not measured)")
    print(f"recall on knowledge base seed {args.seed}, facts test questions ({args.questions} per level); "
          f"minilm runs in {embedders['minilm'].resolved_precision()}:")
    print(f"{'embedder':<16}{'questions':<24}{'mode':<8}{'hit@1':>8}{'hit@5':>8}{'support@5':>11}{'n':>6}")
    vector_scores = {}
    for number, (label, embedder) in enumerate(embedders.items()):
        # BM25 does not depend on the embedder: measured once, with the first
        modes = MODES if number == 0 else ("vector", "hybrid")
        rows = recall(embedder, folder / f"recall-{number}.db", args.seed, args.questions, modes)
        for group, by_mode in rows.items():
            for mode, (hit1, hit5, support, n) in by_mode.items():
                name = "(none)" if mode == "bm25" else label
                print(f"{name:<16}{group:<24}{mode:<8}{hit1:>7.1f}%{hit5:>7.1f}%{support:>10.1f}%{n:>6}")
        hit1, hit5 = rows["levels 1-10"]["vector"][:2]
        vector_scores[label] = (hit5, hit1)
    best_agent = max((k for k in vector_scores if k.startswith("agent")), key=vector_scores.get, default=None)
    if best_agent:
        winner = "minilm" if vector_scores["minilm"] >= vector_scores[best_agent] else best_agent
        print(f"default embedder: {winner} (vector, levels 1-10: minilm hit@5 {vector_scores['minilm'][0]:.1f}% "
              f"hit@1 {vector_scores['minilm'][1]:.1f}%; best agent layer, {best_agent}: hit@5 "
              f"{vector_scores[best_agent][0]:.1f}% hit@1 {vector_scores[best_agent][1]:.1f}%); "
              f"memory.DEFAULT_EMBEDDER = {DEFAULT_EMBEDDER!r}")


def print_step_recall(args, folder: Path) -> None:
    rows = step_recall(MiniLMEmbedder(), folder / "steps.db", args.seed, args.questions)
    n = next(iter(rows.values()))[1]
    print(f"search steps of the tools stage (statement store of seed {args.seed}, {n} steps of the facts test "
          f"questions, {args.questions} per level, query = the opening of the needed statement), hit@1:")
    for (mode, phrase_first), (hit1, _) in rows.items():
        print(f"  {mode:<8} {'exact phrase first' if phrase_first else 'fusion/score only':<20}{hit1:7.1f}%")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions", type=int, default=50, help="test questions per level")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agent", default="runs/tiny/05-experts/model", help="agent folder for the hidden-state embedder")
    parser.add_argument("--layers", default="all", help="agent layers to measure: all, or e.g. 2,4 (0 = embeddings)")
    parser.add_argument("--speed-only", action="store_true", help="skip the recall tables")
    parser.add_argument("--steps", action="store_true", help="only the search steps of the tools stage's traces")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if not args.speed_only:
            print_step_recall(args, folder)
            if args.steps:
                return
            recall_tables(args, folder)
        results = speed(folder / "speed.db", args.entries, args.queries, args.seed)
        load = os.getloadavg()[0]  # the machine may be shared: the load says how much else was running
        print(f"\nsearch over {results['entries']} entries (filled in {results['fill_s']:.1f} s, {args.threads} "
              f"thread(s), load average {load:.1f} on {os.cpu_count()} CPUs), median of {results['queries']} "
              "distinct uncached queries, k=5:")
        for key, value in results.items():
            if key in MODES or key.startswith(("query", "index", "hybrid")):
                print(f"  {key:<28}{value:8.2f} ms")
        print(f"integrity_check: {results['integrity']}")


if __name__ == "__main__":
    main()
