"""Finetune profile of the seed stage: three specialists made from one base model the user brings.

For a user who has one model (an HF folder or a GGUF file) and wants the pipeline: each specialist is a LoRA
fine-tune of that base (peft, folded back into a plain model), on its own data — a task domain of the suites
or the user's JSONL file (`{"prompt": ..., "answer": ...}` per line) — rendered with the model's chat template
when it has one (`models.prompt_format`). The recipe is the tiny profile's composable one (`composable.py`):
rows of the *other* specialists' data anchor the fine-tune to the base by KL, so the task vectors add up when
merged. There is no replay of a pretraining mixture here (the base's pretraining data is not ours); the anchor
is what holds the rest of the model in place.

Each finished specialist is kept in the stage's scratch directory, so a killed stage resumes with the next one.
Exercise: `pytest tests/stages/seed/test_finetune_profile.py`.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch

from ...errors import ForgeError
from ...evaluation import evaluate
from ...evaluation.table import accuracy_table
from ...models import load_model, save_model
from ...stage_contract import StageContext, StageResult
from ...tasks import DOMAINS, iter_tasks
from ...training.supervised import train_supervised
from ...utils.resume import load_phase_state, save_phase_state
from .composable import anchored_loss, fold_lora, with_lora
from .data import seed_eval_tasks
from .leads import specialist_leads

Pair = tuple[str, str]


def read_jsonl_pairs(path: Path) -> list[Pair]:
    """(prompt, answer) rows of a JSONL file; any malformed line is a one-line error naming file and line."""
    if not path.is_file():
        raise ForgeError(f"seed_stage.data: file not found: {path}")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ForgeError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("answer"), str):
                raise ForgeError(f"{path}:{number}: each line must be an object with string fields 'prompt' and 'answer'")
            if not row["answer"]:
                raise ForgeError(f"{path}:{number}: empty 'answer'")
            pairs.append((row["prompt"], row["answer"]))
    if not pairs:
        raise ForgeError(f"seed_stage.data: {path} holds no examples")
    return pairs


def pair_stream(name: str, data: dict[str, Path], levels: list[int], seed: int, world_seed: int) -> Iterator[Pair]:
    """Endless training pairs of one specialist: its JSONL file, reshuffled every pass, or its suite domain."""
    if name in data:
        rows = read_jsonl_pairs(data[name])
        rng = random.Random(seed)

        def cycle() -> Iterator[Pair]:
            while True:
                order = rows[:]
                rng.shuffle(order)
                yield from order

        return cycle()
    if name not in DOMAINS:
        raise ForgeError(f"seed_stage.specialists: {name!r} is neither a task domain ({', '.join(DOMAINS)}) "
                         "nor named in seed_stage.data")
    return ((t.prompt, t.answer) for t in iter_tasks([name], levels, "train", seed, world_seed=world_seed))


def specialist_batches(own: Iterator[Pair], anchors: list[Iterator[Pair]], n_own: int, n_anchor: int
                       ) -> Callable[[int], list[Pair]]:
    """`n_own` own pairs, then `n_anchor` pairs taken in turn from the other specialists' streams (the rows
    `anchored_loss` pulls toward the base)."""
    turn = itertools.cycle(anchors) if anchors else None

    def batch(step: int) -> list[Pair]:
        rows = [next(own) for _ in range(n_own)]
        if turn is not None:
            rows += [next(next(turn)) for _ in range(n_anchor)]
        return rows

    return batch


def build_finetune_seed(ctx: StageContext) -> StageResult:
    cfg, console = ctx.cfg, ctx.console
    sc = cfg.seed_stage
    source = Path(sc.base).expanduser()
    if not source.exists():
        raise ForgeError(f"seed_stage.base not found: {source}")
    data = {name: Path(p) for name, p in sc.data.items()}
    # every stream is built (and every JSONL file read) before any training: bad data fails in the first second
    streams = {name: pair_stream(name, data, list(sc.specialist_levels), cfg.seed + 1 + i, cfg.seed)
               for i, name in enumerate(sc.specialists)}
    base, tokenizer = load_model(str(source), device=ctx.device, dtype=ctx.dtype)
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)

    ft = sc.finetune
    n_anchor = sc.anchor_items if sc.anchor_weight > 0 and len(sc.specialists) > 1 else 0
    state = load_phase_state(ctx.scratch_dir, {"seed_stage": sc.model_dump(mode="json"), "seed": cfg.seed,
                                                "base": str(source)})
    models: dict[str, Path] = {}
    for i, name in enumerate(sc.specialists):
        key = f"specialist_{name}"
        finished = ctx.scratch_dir / key
        if key in state["done"]:
            models[key] = finished
            continue
        torch.manual_seed(ctx.sub_seed("specialist", name))
        anchors = [pair_stream(other, data, list(sc.specialist_levels), cfg.seed + 100 + j, cfg.seed)
                   for j, other in enumerate(sc.specialists) if other != name]
        try:
            wrapped, params = with_lora(_trainable_copy(base), sc.lora_rank, sc.lora_alpha)
        except ValueError as exc:  # peft: none of the Llama-style projection names exist in this architecture
            raise ForgeError(f"seed_stage.base: cannot put LoRA adapters on this model: {str(exc).splitlines()[0]}") from None
        log = train_supervised(
            wrapped, tokenizer, specialist_batches(streams[name], anchors, ft.batch_size - n_anchor, n_anchor),
            steps=ft.steps, lr=ft.lr, warmup_steps=ft.warmup_steps, weight_decay=ft.weight_decay,
            loss_fn=anchored_loss(base, n_anchor, sc.anchor_weight), params=params, desc=f"seed: specialist {name}",
        )
        save_model(fold_lora(wrapped).eval(), tokenizer, finished)
        state["done"].append(key)
        state["logs"][key] = {"final_loss": round(log.tail_mean(), 4), "seconds": round(log.seconds, 1)}
        save_phase_state(ctx.scratch_dir, state)
        models[key] = finished

    paths = {"base": ctx.stage_dir / "base"}
    save_model(base, tokenizer, paths["base"])  # a GGUF base is kept dequantized: evomerge's task-vector origin
    for key, finished in models.items():
        paths[key] = ctx.stage_dir / key
        shutil.copytree(finished, paths[key], dirs_exist_ok=True)

    tasks = seed_eval_tasks(sc, cfg.seed)
    reports = {"base": evaluate(base, tokenizer, tasks, batch_size=16)}
    for key in models:
        model, _ = load_model(str(paths[key]), device=ctx.device, dtype=ctx.dtype)
        reports[key] = evaluate(model, tokenizer, tasks, batch_size=16)
    console.print(accuracy_table(reports, title="seed (finetune): test accuracy (%) by domain and level"))
    suite = [name for name in sc.specialists if name in DOMAINS]
    return StageResult(models=paths, metrics={
        "profile": "finetune",
        "base_source": str(source),
        "eval": {name: report.to_dict() for name, report in reports.items()},
        "train": state["logs"],
        "specialist_lead": specialist_leads(reports, suite),
        "parameters": sum(p.numel() for p in base.parameters()),
    })


def _trainable_copy(base: torch.nn.Module) -> torch.nn.Module:
    import copy

    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()
