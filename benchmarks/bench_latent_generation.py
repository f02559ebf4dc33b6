"""Generation with a latent BitLinear model: weights quantized once per generation vs at every decode step.

Every stage after BitNet (curriculum, experts, baking, tools, ADAS) generates with the latent ternary model, whose
BitLinear forward re-quantizes its weight on every call (about ten passes over the weight). Since
`frozen_ternary_weights` the batched generation loop quantizes each weight once per `generate` call and reuses it.
This benchmark times `generate_token_ids` both ways, side by side in one process (rounds interleaved, one thread
timed in process CPU time so other jobs on the machine slow both alike), and checks that the generated tokens are
identical.

    python benchmarks/bench_latent_generation.py                              # tiny profile and SmolLM2-135M shape
    python benchmarks/bench_latent_generation.py --shapes smollm2 --batch-sizes 1,8 --new-tokens 24 --rounds 3

The SmolLM2 shape has random weights (ternarized); prompts are token ids of the task suites' prompts through the
tiny character tokenizer (the timing depends on shapes and lengths only).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_packed_decode import smollm2_shaped_model  # noqa: E402


def build(shape: str):
    from agent_forge.config import TinyModelConfig
    from agent_forge.models import build_tiny_model, build_tiny_tokenizer
    from agent_forge.models.formats.ternary import convert_to_bitlinear
    from agent_forge.tasks import alphabet

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tokenizer, TinyModelConfig(), seed=0) if shape == "tiny" else smollm2_shaped_model()
    convert_to_bitlinear(model)
    return model.float().eval(), tokenizer


def prompts_ids(tokenizer, count: int) -> list[list[int]]:
    from agent_forge.models import prompt_format
    from agent_forge.tasks import task_grid

    tasks = task_grid(["arithmetic", "strings", "logic"], [1, 2, 3], "test", max(1, count // 9 + 1), 0)[:count]
    return prompt_format(tokenizer).encode_prompts([t.prompt for t in tasks], render=True)


def timed_generation(model, tokenizer, prompts, *, batch_size: int, new_tokens: int, frozen: bool):
    from agent_forge.models import generation

    freeze = generation.frozen_ternary_weights
    if not frozen:  # the loop as it was: every forward quantizes its weights afresh
        generation.frozen_ternary_weights = lambda _model: contextlib.nullcontext()
    try:
        start = time.process_time()
        ids = generation.generate_token_ids(model, tokenizer, prompts, max_new_tokens=new_tokens,
                                            batch_size=batch_size, progress=False)
        seconds = time.process_time() - start
    finally:
        generation.frozen_ternary_weights = freeze
    return ids, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="tiny,smollm2")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread (process CPU time), {args.prompts} prompts, "
          f"{args.new_tokens} new tokens at most, median of {args.rounds} interleaved rounds")
    print(f"{'shape':<8} {'batch':>5} {'tokens':>6} {'per step tok/s':>14} {'frozen tok/s':>12} {'ratio':>6}  identical")
    for shape in args.shapes.split(","):
        model, tokenizer = build(shape)
        prompts = prompts_ids(tokenizer, args.prompts)
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            times = {False: [], True: []}
            outputs = {}
            for _ in range(args.rounds):
                for frozen in (False, True):
                    ids, seconds = timed_generation(model, tokenizer, prompts, batch_size=batch_size,
                                                    new_tokens=args.new_tokens, frozen=frozen)
                    times[frozen].append(seconds)
                    outputs[frozen] = ids
            tokens = sum(len(ids) for ids in outputs[True])
            slow, fast = (tokens / statistics.median(times[f]) for f in (False, True))
            same = "yes" if outputs[True] == outputs[False] else "NO"
            print(f"{shape:<8} {batch_size:>5} {tokens:>6} {slow:>14.1f} {fast:>12.1f} {fast / slow:>5.2f}x  {same}")


if __name__ == "__main__":
    main()
