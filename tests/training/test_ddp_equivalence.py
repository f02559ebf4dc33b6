"""DDP with gradient accumulation follows the single-process loss trajectory of the same global batch.

`accelerate launch --multi_gpu --num_processes 2` with no visible GPU runs this file as a script (the `__main__` block below): two
processes, gloo, each training a tiny Llama with `train_supervised` on its shard of every global batch, once
without and once with gradient accumulation. The test compares their per-step losses and final weights with
one process training on the whole batch, and checks that the processes really split each batch (disjoint
halves that cover it) rather than each training on all of it. The batches mix short and long answers, so a
loop that averaged per-shard means instead of weighting by tokens would miss the tolerance (checked below).
About 20 s on 2 busy cores. Run: `python -m pytest tests/training/test_ddp_equivalence.py`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, encode_pairs
from agent_forge.training.supervised import answer_cross_entropy, train_supervised

ALPHABET = "abcdefghijklmnopqrstuvwxyz: \n"
CONFIG = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128)
STEPS = 6
GLOBAL_BATCH = 8
LR = 1e-2
RUNS = {"plain": 1, "accumulated": 2}  # run name -> grad_accum in each process
# float tolerance: shards are padded to other widths and summed in another order, which moves the last bits.
# Adam divides each gradient by its running scale, so on weights whose gradient is near zero (logits of letters
# no answer uses) those bits become weight differences up to ~1e-5 after 6 steps, against updates of ~1e-2
LOSS_RTOL, WEIGHT_ATOL, UPDATE_RTOL = 1e-5, 1e-4, 1e-3


def global_batch(step: int) -> list[tuple[str, str]]:
    """The step's whole batch: copy tasks whose answers run from 1 to 24 letters, so shards differ in tokens."""
    rng = random.Random(1000 + step)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.choice([1, 2, 3, 16, 20, 24])))
             for _ in range(GLOBAL_BATCH)]
    return [(f"copy: {w}", w) for w in words]


def fresh_model(tokenizer):
    torch.manual_seed(0)
    return build_tiny_model(tokenizer, CONFIG, seed=0)


def train(grad_accum: int, seen: list | None = None):
    """One training run; `seen` collects the prompts this process encoded (its shard)."""
    tokenizer = build_tiny_tokenizer(ALPHABET)
    model = fresh_model(tokenizer)

    def encode(pairs):
        if seen is not None:
            seen.extend(p for p, _ in pairs)
        return encode_pairs(tokenizer, [p for p, _ in pairs], [a for _, a in pairs])

    log = train_supervised(model, tokenizer, global_batch, steps=STEPS, lr=LR, warmup_steps=2, progress=False,
                           encode=encode, grad_accum=grad_accum)
    return log.losses, model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Path:
    """Run this file under `accelerate launch` with 2 CPU processes; the folder they wrote their results to."""
    out = tmp_path_factory.mktemp("ddp")
    # `--cpu` would make accelerate run one process (its multi-CPU launcher is mpirun); `--multi_gpu` is its
    # torchrun launcher, and with no visible GPU the loop's accelerator falls back to CPU DDP over gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), __file__, str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.parametrize("run", list(RUNS))
def test_two_processes_follow_the_single_process_trajectory(launched, run):
    single_losses, single_model = train(grad_accum=1)
    results = [json.loads((launched / f"{run}-rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result["world_size"] == 2 and result["backend"] == "gloo"
        # every process logs the global batch's loss, the same number a single process logs
        assert result["losses"] == pytest.approx(single_losses, rel=LOSS_RTOL)
    assert single_losses[-1] < single_losses[0]  # it trained, so the trajectories carry information
    weights = [torch.load(launched / f"{run}-rank{r}.pt") for r in range(2)]
    initial = fresh_model(build_tiny_tokenizer(ALPHABET)).state_dict()
    moved = gap = 0.0
    for name, value in single_model.state_dict().items():
        torch.testing.assert_close(weights[0][name], value, rtol=0, atol=WEIGHT_ATOL)
        moved += float((value - initial[name]).pow(2).sum())
        gap += float((weights[0][name] - value).pow(2).sum())
    # over all weights, the two runs differ by a thousandth of how far training moved them, or less
    assert gap ** 0.5 < UPDATE_RTOL * moved ** 0.5
    for name in weights[0]:
        # DDP applies the same all-reduced gradient in both processes, so their weights are the same bits
        assert torch.equal(weights[0][name], weights[1][name])
    # each process encoded only its half of each global batch: disjoint, and together the whole batch
    per_step = GLOBAL_BATCH // 2
    for step in range(STEPS):
        halves = [r["seen"][step * per_step : (step + 1) * per_step] for r in results]
        whole = [p for p, _ in global_batch(step)]
        assert halves[0] + halves[1] == whole


def test_accumulation_in_one_process_matches_the_whole_batch():
    whole, _ = train(grad_accum=1)
    seen: list[str] = []
    accumulated, _ = train(grad_accum=4, seen=seen)
    assert accumulated == pytest.approx(whole, rel=LOSS_RTOL)
    assert len(seen) == STEPS * GLOBAL_BATCH  # four micro-batches of two per step, each encoded once


def test_weighting_by_tokens_is_what_makes_shards_add_up():
    """The batches are uneven enough that averaging the two shards' mean losses misses the whole batch's mean
    by far more than the tolerance above (even at the first step, where a random model's per-token losses are
    alike): the equivalence test would fail on a loop that did that."""
    tokenizer = build_tiny_tokenizer(ALPHABET)
    model = fresh_model(tokenizer)
    pairs = global_batch(0)

    def mean_loss(items):
        batch = encode_pairs(tokenizer, [p for p, _ in items], [a for _, a in items])
        return float(answer_cross_entropy(model, batch))

    with torch.no_grad():
        whole = mean_loss(pairs)
        naive = (mean_loss(pairs[:4]) + mean_loss(pairs[4:])) / 2
    assert abs(naive - whole) > 10 * LOSS_RTOL * abs(whole)


def _main(out: Path) -> None:
    """One of the launched processes: train both runs and write what this process saw and logged."""
    torch.set_num_threads(1)
    from agent_forge.training.distributed import accelerator_for_launch

    accelerator = accelerator_for_launch()
    rank = accelerator.process_index
    for run, grad_accum in RUNS.items():
        seen: list[str] = []
        losses, model = train(grad_accum, seen)
        torch.save(model.state_dict(), out / f"{run}-rank{rank}.pt")
        (out / f"{run}-rank{rank}.json").write_text(json.dumps({
            "losses": losses, "seen": seen, "world_size": accelerator.num_processes,
            "backend": torch.distributed.get_backend(),
        }))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
