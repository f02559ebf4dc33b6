"""Shared by the learning tests: the tiny deployed agent, a version store holding it, and logged experience.

`train_base_agent` trains a tiny Llama (hidden 64, 2 layers) for ~25 s on one thread on level 1 of arithmetic,
strings and logic: it adds 2-digit numbers well and has never seen level 2's 3-digit additions, which it
answers wrong (0-5%): the distribution it is weak at, whose next level it can learn from a few hundred logged
examples. `make_store` puts an agent into a fresh version store as `v0`. `log_answers` records the agent's own
greedy answers as the server does (recognised, verified), for tests that need a log without a server.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from agent_forge.config import TinyModelConfig
from agent_forge.interactions import Interaction, InteractionLog, new_id, set_current, verify_answer
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, generate, save_model
from agent_forge.tasks import alphabet, make_tasks
from agent_forge.training.supervised import train_supervised

BASE_CONFIG = TinyModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=128)
KNOWN = [("arithmetic", 1), ("strings", 1), ("logic", 1)]  # what the base is trained on
WEAK = ("arithmetic", 2)  # the next level, never seen


def train_base_agent(path: Path, steps: int = 500) -> Path:
    tokenizer = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tokenizer, BASE_CONFIG, seed=0)
    pool = [(t.prompt, t.answer) for d, lv in KNOWN for t in make_tasks(d, lv, "train", 3000, 1)]
    rng = random.Random(0)
    train_supervised(model, tokenizer, lambda step: rng.sample(pool, 64), steps=steps, lr=3e-3, warmup_steps=20,
                     progress=False)
    save_model(model, tokenizer, path)
    return path


def make_store(agent: Path, store: Path) -> Path:
    shutil.copytree(agent, store / "versions" / "v0")
    set_current(store, "v0", "init", "test")
    return store


def log_answers(log_path: Path, agent_path: Path, tasks, version: str = "v0") -> None:
    from agent_forge.models import load_model

    model, tokenizer = load_model(agent_path)
    outputs = generate(model, tokenizer, [t.prompt for t in tasks], max_new_tokens=12, progress=False)
    log = InteractionLog.open(log_path)
    try:
        for task, output in zip(tasks, outputs):
            row = Interaction(new_id("chatcmpl"), "chat", "tiny", version, prompt=task.prompt, answer=output)
            found = verify_answer(task.prompt, output)
            if found is not None:
                recognised, row.verified = found
                row.domain, row.reference = recognised.domain, recognised.answer
            log.record(row).result(30)
    finally:
        log.close()
