"""Quiet-STaR thoughts after every token: the parallel generator against one generation per position.

For each sequence length it times `think_in_parallel` (one forward pass per thought token for all positions,
diagonal attention mask, shared KV cache) and `think_naively` (prefix + thought + teacher-forced tokens run
separately for every position and thought) on the same random token sequences, checks that both produce the
same thoughts and mixed predictions, and prints the time saved and the speed ratio naive / parallel, measured
side by side in one process (best of `--repeats`). The naive cost grows linearly with length (one generation
per position, dominated by per-call overhead on a small model); the parallel cost grows faster than linearly
once the masked attention over every position's thought keys dominates, so the absolute saving grows with
length while the ratio levels off.

    python benchmarks/bench_quietstar_parallel.py                      # tiny profile shape, 1 thread
    python benchmarks/bench_quietstar_parallel.py --lengths 32 64 --thought-length 4 --threads 2
    python benchmarks/bench_quietstar_parallel.py --model runs/tiny/02-quietstar/model
"""

from __future__ import annotations

import argparse
import time

import torch

from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, load_model
from agent_forge.models.formats.thoughts.mixing import MixingHead
from agent_forge.stages.quietstar.parallel import ThoughtShape, think_in_parallel
from agent_forge.stages.quietstar.reference import think_naively
from agent_forge.inference.thought_sampling import ThoughtSampler
from agent_forge.models.formats.thoughts.tokens import add_thought_tokens
from agent_forge.tasks import alphabet


def _model(source: str | None):
    if source:
        model, tokenizer = load_model(source, device="cpu", dtype="float32")
        return model, tokenizer, "loaded " + source
    tokenizer = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tokenizer, TinyModelConfig(), seed=0)
    return model, tokenizer, "tiny profile shape (hidden 128, 4 layers), random weights"


def _best_time(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or .gguf (default: a tiny-profile model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batch", type=int, default=1)
    # defaults: the quietstar stage's defaults (config/quietstar.py)
    parser.add_argument("--thought-length", type=int, default=4)
    parser.add_argument("--n-thoughts", type=int, default=2)
    parser.add_argument("--n-true", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer, what = _model(args.model)
    tokens, _ = add_thought_tokens(model, tokenizer)
    head = MixingHead(model.config.hidden_size)
    with torch.no_grad():  # a non-trivial head, so the mixed predictions compared below depend on the thoughts
        head.output.weight.normal_(std=0.1)
    shape = ThoughtShape(args.thought_length, args.n_thoughts, args.n_true)
    print(f"model: {what}; batch {args.batch}, thought length {shape.thought_length}, "
          f"{shape.n_thoughts} thoughts/position, n_true {shape.n_true}, {args.threads} thread(s)")
    print(f"{'length':>6} {'parallel s':>11} {'naive s':>9} {'saved s':>8} {'ratio':>7}  same thoughts  max |mixed logit diff|")
    gen = torch.Generator().manual_seed(0)
    lm_head = model.get_output_embeddings()
    for length in args.lengths:
        # ordinary tokens only (ids past the specials, before the thought delimiters)
        ids = torch.randint(4, tokens.start_id, (args.batch, length), generator=gen)
        mask = torch.ones_like(ids)
        sampler = ThoughtSampler(tokens, 1.0, seed=length)
        common = dict(tokens=tokens, shape=shape, sampler=sampler)
        fast_s, fast = _best_time(lambda: think_in_parallel(model, head, ids, mask, **common), args.repeats)
        slow_s, slow = _best_time(lambda: think_naively(model, head, ids, mask, **common), args.repeats)
        same = torch.equal(fast.thought_ids, slow.thought_ids)
        with torch.no_grad():
            diff = (lm_head(fast.mixed_hidden) - lm_head(slow.mixed_hidden)).abs().max().item()
        print(f"{length:>6} {fast_s:>11.3f} {slow_s:>9.3f} {slow_s - fast_s:>8.2f} {slow_s / fast_s:>6.1f}x  "
              f"{str(same):>13}  {diff:.2e}")


if __name__ == "__main__":
    main()
