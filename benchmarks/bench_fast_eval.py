"""Speed of the teacher-forced evaluation fast path against greedy generation, measured side by side.

    python benchmarks/bench_fast_eval.py [--model RUN/00-seed/specialist_arithmetic] [--n 400]

Without --model it trains a tiny model for a few seconds first. Prints the timings, the ratios, and how many
items the paths agree on. Against batched KV-cache generation the fast path saves only the per-step overhead
(both do about the same arithmetic when answers are short), so expect a small ratio there on a compute-bound CPU;
against decoding one item at a time it saves the whole loop.
"""

from __future__ import annotations

import argparse
import time

import torch

from agent_forge.config import TinyModelConfig
from agent_forge.evaluation import fast_exact_match, generate_answers
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, load_model
from agent_forge.tasks import DOMAINS, alphabet, iter_tasks, make_tasks
from agent_forge.training.supervised import train_supervised


def quick_model():
    torch.manual_seed(0)
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TinyModelConfig(), seed=0)
    stream = iter_tasks(list(DOMAINS), [1, 2], "train", seed=0)
    train_supervised(model, tok, lambda s: [(t.prompt, t.answer) for t in (next(stream) for _ in range(32))],
                     steps=200, lr=2e-3, warmup_steps=10)
    return model, tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--n", type=int, default=400, help="items in total, spread over domains and levels 1-4")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--unbatched", type=int, default=100, help="items also decoded one at a time (0: skip)")
    args = parser.parse_args()
    model, tok = load_model(args.model) if args.model else quick_model()
    per = max(1, args.n // (len(DOMAINS) * 4))
    tasks = [t for d in DOMAINS for lvl in (1, 2, 3, 4) for t in make_tasks(d, lvl, "test", per, seed=0)]

    fast_exact_match(model, tok, tasks[:8])  # warm-up, so neither side pays first-call costs
    t0 = time.perf_counter()
    fast = fast_exact_match(model, tok, tasks, batch_size=args.batch_size)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    outputs = generate_answers(model, tok, tasks, batch_size=args.batch_size)
    t_gen = time.perf_counter() - t0
    slow = [o == t.answer for t, o in zip(tasks, outputs)]
    agree = sum(a == b for a, b in zip(fast, slow))
    print(f"items: {len(tasks)}  threads: {torch.get_num_threads()}")
    print(f"fast path   : {t_fast:7.3f} s  ({len(tasks) / t_fast:8.1f} items/s)  exact {sum(fast)}")
    print(f"generation  : {t_gen:7.3f} s  ({len(tasks) / t_gen:8.1f} items/s)  exact {sum(slow)}")
    print(f"speed ratio (batched KV-cache generation / fast): {t_gen / t_fast:.1f}x   agreement: {agree}/{len(tasks)}")
    if args.unbatched:
        # decoding one item at a time is how a plain `model.generate` loop over a test set runs
        subset = tasks[: args.unbatched]
        t0 = time.perf_counter()
        one_by_one = generate_answers(model, tok, subset, batch_size=1)
        t_one = (time.perf_counter() - t0) * len(tasks) / len(subset)
        same = sum((o == t.answer) == f for o, t, f in zip(one_by_one, subset, fast))
        print(f"unbatched   : {t_one:7.3f} s  (extrapolated from {len(subset)} items)  agreement {same}/{len(subset)}")
        print(f"speed ratio (unbatched generation / fast): {t_one / t_fast:.1f}x")


if __name__ == "__main__":
    main()
