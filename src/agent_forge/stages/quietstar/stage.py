"""The quietstar stage: fine-tune the merged model with Quiet-STaR, measure it against plain fine-tuning, save.

Steps: load the previous stage's `model`; train it with Quiet-STaR on the stage's data (`data.py`); save it
as an HF folder plus `quietstar_head.safetensors` (`checkpoint.py`) under `<stage_dir>/model`; then, with
`compare_without_thoughts`, fine-tune a second copy of the same input for the same steps on the same batches
without thoughts. Both are measured on the validation NLL of answer tokens and the test accuracy on
multi-step tasks (meta `work` >= `multistep_min_work`), the Quiet-STaR model with and without thinking.
The stage is resumable the pipeline's way: it is recomputed from its input until its manifest entry says
done. Exercise: `agent-forge run --until quietstar` or `pytest tests/stages/quietstar/test_quietstar_stage.py`.
"""

from __future__ import annotations

import time

import torch
from rich.table import Table

from ...errors import ForgeError
from ...evaluation import generate_exact_match, percent
from ...evaluation.table import cell, rows_table
from ...models import load_agent, save_agent, with_thoughts
from ...models.formats.thoughts import HeadInfo
from ...tasks import task_grid
from ...training.supervised import train_supervised
from ...stage_contract import StageContext, StageResult
from .data import text_chunks, training_batches
from .evaluate import accuracy_with_thoughts, answer_nll_plain, answer_nll_with_thoughts
from .train import anchored_control_loss, train_quietstar


def eval_tasks(qc, seed: int) -> tuple[list, list]:
    """(validation tasks, multi-step test tasks) of the stage's domains and levels."""
    val = task_grid(qc.domains, qc.levels, "val", qc.eval_items_per_level, seed)
    test = task_grid(qc.domains, qc.levels, "test", qc.eval_items_per_level, seed)
    multistep = [t for t in test if t.meta.get("work", 0) >= qc.multistep_min_work]
    return val, multistep


def run(ctx: StageContext) -> StageResult:
    cfg, stage_dir, console = ctx.cfg, ctx.stage_dir, ctx.console
    qc = cfg.quietstar
    source = ctx.input_model()
    if not qc.domains:
        raise ForgeError("quietstar.domains must name at least one task domain")
    texts = text_chunks(qc.text_files, qc.text_chunk_chars)
    val_tasks, test_tasks = eval_tasks(qc, cfg.seed)

    def batches():
        return training_batches(
            qc.domains, qc.levels, batch_size=qc.train.batch_size, worked_fraction=qc.worked_fraction,
            texts=texts, seed=cfg.seed,
        )

    agent = load_agent(source, device=ctx.device, dtype=ctx.dtype)
    model, tokenizer = agent.model, agent.tokenizer
    entry = _plain_metrics(model, tokenizer, val_tasks, test_tasks, qc)
    torch.manual_seed(ctx.sub_seed("train"))
    trained = train_quietstar(model, tokenizer, qc, batches(), seed=cfg.seed)
    out_dir = stage_dir / "model"
    info = HeadInfo(qc.thought_length, qc.start_token, qc.end_token)
    save_agent(with_thoughts(agent, trained.head, trained.tokens, info), out_dir)

    common = dict(tokens=trained.tokens, thought_length=qc.thought_length)
    started = time.perf_counter()
    acc_think, answers = accuracy_with_thoughts(
        model, tokenizer, trained.head, test_tasks, stride=qc.think_stride, thought_temperature=qc.inference_temperature,
        max_new_tokens=qc.max_new_tokens, batch_size=qc.eval_batch_size, seed=cfg.seed, **common,
    )
    acc_silent, _ = accuracy_with_thoughts(
        model, tokenizer, trained.head, test_tasks, think=False, max_new_tokens=qc.max_new_tokens,
        batch_size=qc.eval_batch_size, **common,
    )
    quietstar = {
        "val_answer_nll": _r(answer_nll_with_thoughts(model, tokenizer, trained.head, val_tasks, batch_size=qc.eval_batch_size, **common)),
        "val_answer_nll_no_thinking": _r(answer_nll_plain(model, tokenizer, val_tasks, qc.eval_batch_size)),
        "test_multistep_accuracy": percent(acc_think),
        "test_multistep_accuracy_no_thinking": percent(acc_silent),
        "train_seconds": round(trained.log.seconds, 1),
        "final_loss": round(trained.log.tail_mean(), 4),
        "train_tail": trained.objective.summary(),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }
    metrics = {
        "input_model": entry,
        "quietstar": quietstar,
        "thought_init": trained.init,
        "eval_items": {"val": len(val_tasks), "test_multistep": len(test_tasks)},
        "example_thoughts": _examples(test_tasks, answers),
        "storage": {"model": "HF folder", "mixing_head": "quietstar_head.safetensors in the same folder"},
    }
    del model, agent
    if qc.compare_without_thoughts:
        control_agent = load_agent(source, device=ctx.device, dtype=ctx.dtype)
        control, control_tok = control_agent.model, control_agent.tokenizer
        torch.manual_seed(ctx.sub_seed("train"))
        train = qc.train
        log = train_supervised(
            control, control_tok, batches(), steps=train.steps, lr=train.lr, warmup_steps=train.warmup_steps,
            weight_decay=train.weight_decay, desc="quietstar: control without thoughts",
            loss_fn=anchored_control_loss(control, qc.anchor_kl),
        )
        metrics["no_thoughts"] = {
            **_plain_metrics(control, control_tok, val_tasks, test_tasks, qc),
            "train_seconds": round(log.seconds, 1),
            "final_loss": round(log.tail_mean(), 4),
        }
        del control, control_agent
    metrics = {"summary": _summary(metrics), **metrics}
    console.print(_comparison_table(metrics))
    return StageResult(models={"model": out_dir}, metrics=metrics)


def _summary(metrics: dict) -> dict:
    """The headline numbers `agent-forge status` shows: thinking vs the no-thought control."""
    q = metrics["quietstar"]
    summary = {"nll_thinking": q["val_answer_nll"], "acc_thinking": q["test_multistep_accuracy"]}
    if "no_thoughts" in metrics:
        summary["nll_no_thoughts"] = metrics["no_thoughts"]["val_answer_nll"]
        summary["acc_no_thoughts"] = metrics["no_thoughts"]["test_multistep_accuracy"]
    return summary


def _plain_metrics(model, tokenizer, val_tasks, test_tasks, qc) -> dict:
    scores = generate_exact_match(model, tokenizer, test_tasks, batch_size=qc.eval_batch_size, max_new_tokens=qc.max_new_tokens)
    return {
        "val_answer_nll": _r(answer_nll_plain(model, tokenizer, val_tasks, qc.eval_batch_size)),
        "test_multistep_accuracy": percent(sum(scores) / max(1, len(scores))),
    }


def _examples(tasks, answers, count: int = 4) -> list[dict]:
    """A few answers with their first thoughts, spread over the task list (domains and levels differ)."""
    picks = sorted({round(i * (len(tasks) - 1) / max(1, count - 1)) for i in range(count)}) if tasks else []
    return [
        {"prompt": tasks[i].prompt, "reference": tasks[i].answer, "answer": answers[i].answer,
         "thoughts": answers[i].thoughts[:3]}
        for i in picks
    ]


def _r(x: float) -> float:
    return round(float(x), 4)


def _comparison_table(metrics: dict) -> Table:
    q = metrics["quietstar"]
    rows = [("input model", metrics["input_model"]["val_answer_nll"], metrics["input_model"]["test_multistep_accuracy"])]
    rows.append(("Quiet-STaR, thinking", q["val_answer_nll"], q["test_multistep_accuracy"]))
    rows.append(("Quiet-STaR, not thinking", q["val_answer_nll_no_thinking"], q["test_multistep_accuracy_no_thinking"]))
    if "no_thoughts" in metrics:
        n = metrics["no_thoughts"]
        rows.append(("same steps, no thoughts", n["val_answer_nll"], n["test_multistep_accuracy"]))
    return rows_table("quietstar: validation answer NLL and multi-step test accuracy",
                      ("model", "val answer NLL", "multi-step accuracy (%)"),
                      [(name, cell(nll, 3), cell(acc)) for name, nll, acc in rows])
