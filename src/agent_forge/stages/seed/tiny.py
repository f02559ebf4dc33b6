"""Tiny profile of the seed stage: shared pretraining, then three specialist fine-tunes built to merge (see composable.py)."""

from __future__ import annotations

import copy

import torch

from ...evaluation import evaluate
from ...evaluation.table import accuracy_table
from ...models import build_tiny_model, build_tiny_tokenizer, save_model
from ...tasks import alphabet
from ...training.supervised import train_supervised
from ...stage_contract import StageContext, StageResult
from .composable import anchored_batches, anchored_loss, fold_lora, with_lora
from .data import pretrain_batches, seed_eval_tasks, specialist_batches
from .leads import specialist_leads


def build_tiny_seed(ctx: StageContext) -> StageResult:
    cfg, stage_dir, console = ctx.cfg, ctx.stage_dir, ctx.console
    sc = cfg.seed_stage
    torch.manual_seed(ctx.sub_seed("base"))
    tokenizer = build_tiny_tokenizer(alphabet())
    base = build_tiny_model(tokenizer, sc.tiny, seed=cfg.seed)

    pre = sc.pretrain
    pre_log = train_supervised(
        base, tokenizer,
        pretrain_batches(sc.pretrain_levels, pre.batch_size, cfg.seed, cfg.seed, sc.statement_fraction),
        steps=pre.steps, lr=pre.lr, warmup_steps=pre.warmup_steps, weight_decay=pre.weight_decay,
        desc="seed: pretrain base",
    )
    models = {"base": base}
    logs = {"base": pre_log}
    ft = sc.finetune
    n_anchor = sc.anchor_items if sc.anchor_weight > 0 else 0
    for i, domain in enumerate(sc.specialists):
        torch.manual_seed(ctx.sub_seed("specialist", domain))
        specialist = copy.deepcopy(base)
        params = None
        if sc.finetune_method == "lora":
            specialist, params = with_lora(specialist, sc.lora_rank, sc.lora_alpha)
        own = specialist_batches(
            domain, sc.specialist_levels,
            pretrain_batches(sc.pretrain_levels, ft.batch_size, cfg.seed + 7919 + i, cfg.seed, sc.statement_fraction),
            sc.replay_fraction, ft.batch_size - n_anchor, cfg.seed + 1 + i, cfg.seed,
        )
        logs[domain] = train_supervised(
            specialist, tokenizer,
            anchored_batches(own, domain, sc.specialist_levels, n_anchor, cfg.seed + 100 + i, cfg.seed),
            steps=ft.steps, lr=ft.lr, warmup_steps=ft.warmup_steps, weight_decay=ft.weight_decay,
            loss_fn=anchored_loss(base, n_anchor, sc.anchor_weight), params=params,
            desc=f"seed: specialist {domain}",
        )
        if sc.finetune_method == "lora":
            specialist = fold_lora(specialist)
        models[f"specialist_{domain}"] = specialist

    tasks = seed_eval_tasks(sc, cfg.seed)
    reports = {name: evaluate(model, tokenizer, tasks) for name, model in models.items()}
    console.print(accuracy_table(reports, title="seed: test accuracy (%) by domain and level"))

    paths = {}
    for name, model in models.items():
        paths[name] = stage_dir / name
        save_model(model, tokenizer, paths[name])
    metrics = {
        "profile": "tiny",
        "eval": {name: report.to_dict() for name, report in reports.items()},
        "train": {name: {"final_loss": round(log.tail_mean(), 4), "seconds": round(log.seconds, 1)} for name, log in logs.items()},
        "specialist_lead": specialist_leads(reports, sc.specialists),
        "parameters": sum(p.numel() for p in base.parameters()),
    }
    return StageResult(models=paths, metrics=metrics)
