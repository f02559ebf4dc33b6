"""Stage 1.3 run: full-precision model in, ternary model (latent weights) and its 2-bit packed export out.

Steps: load the previous stage's model (the teacher); measure it; measure a naive ternary conversion; convert
with the lambda warm-up and distillation; save the ternary model as an ordinary HF folder (``model/``, latent
weights + marker, see ``convert``) and the packed export (``packed/``, transformers bitnet layout); check that
packed CPU inference reproduces the ternary model and measure its accuracy and size. The stage is a pure
function of its inputs and seed, so the pipeline's resume (recompute a stage that is not marked done) is exact.
Files an earlier stage keeps next to its model (Quiet-STaR's mixing head) are carried over unchanged.

Run: ``agent-forge run --config tiny`` with ``bitnet`` in ``stages``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...errors import ForgeError
from ...evaluation import evaluate
from ...evaluation.table import accuracy_table
from ...models import Agent, load_agent, save_agent
from ...models.formats.ternary import bitlinear_layers, kernel_description, load_packed, packed_size_report
from ...tasks import iter_tasks, task_grid
from ...stage_contract import StageContext, StageResult
from .qat import convert_with_distillation, naive_ternary

MODEL_KEY = "model"
PACKED_KEY = "packed"


def _eval_tasks(bc, seed: int) -> list:
    return task_grid(bc.domains, bc.levels, "test", bc.eval_items_per_level, seed)


def _train_batches(bc, seed: int):
    stream = iter_tasks(list(bc.domains), list(bc.levels), "train", seed)
    size = bc.train.batch_size
    return lambda step: [(t.prompt, t.answer) for t in (next(stream) for _ in range(size))]


def _weight_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def _ternary_stats(model) -> dict:
    layers = bitlinear_layers(model)
    total = zeros = 0
    for layer in layers.values():
        codes, _ = layer.ternary()
        total += codes.numel()
        zeros += int((codes == 0).sum())
    return {"layers": len(layers), "weights": total, "zero_fraction": round(zeros / max(1, total), 4)}


@torch.no_grad()
def _max_logit_gap(a, b, tokenizer, tasks) -> float:
    """Largest |logit| difference between two models on a few test prompts (packed vs BitLinear check)."""
    texts = [t.prompt for t in tasks[:8]]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    device_a = next(a.parameters()).device
    la = a(**{k: v.to(device_a) for k, v in batch.items()}).logits.float().cpu()
    lb = b(**batch).logits.float()
    mask = batch["attention_mask"].bool()
    return float((la - lb).abs()[mask].max())


def run(ctx: StageContext) -> StageResult:
    cfg, stage_dir, console = ctx.cfg, ctx.stage_dir, ctx.console
    bc = cfg.bitnet
    source = ctx.input_model(bc.input_key)
    entering = load_agent(source, device=ctx.device, dtype=ctx.dtype)
    teacher, tokenizer = entering.model, entering.tokenizer
    if entering.ternary:
        raise ForgeError(f"{source} is already a BitNet ternary model; nothing to convert")
    tasks = _eval_tasks(bc, cfg.seed)
    reports = {"full precision": evaluate(teacher, tokenizer, tasks, batch_size=bc.eval_batch_size)}
    conversion = dict(exclude=bc.exclude, sub_norm=bc.sub_norm, norm_eps=bc.norm_eps, act_bits=bc.act_bits)
    if bc.evaluate_naive:
        naive = naive_ternary(teacher, **conversion)
        reports["naive ternary"] = evaluate(naive, tokenizer, tasks, batch_size=bc.eval_batch_size)
        del naive

    torch.manual_seed(ctx.sub_seed("train"))
    start = time.perf_counter()
    student, log, lambdas = convert_with_distillation(
        teacher, tokenizer, _train_batches(bc, cfg.seed), steps=bc.train.steps, lr=bc.train.lr,
        batch_warmup_steps=bc.train.warmup_steps, weight_decay=bc.train.weight_decay, grad_clip=bc.grad_clip,
        warmup_fraction=bc.warmup_fraction, warmup_schedule=bc.warmup_schedule, kl_weight=bc.kl_weight,
        task_weight=bc.task_weight, temperature=bc.temperature, kl_positions=bc.kl_positions, **conversion,
    )
    train_seconds = time.perf_counter() - start
    reports["warm-up + distillation"] = evaluate(student, tokenizer, tasks, batch_size=bc.eval_batch_size)

    outputs = {MODEL_KEY: stage_dir / MODEL_KEY}
    # the student carries every extension of the agent that entered (e.g. the Quiet-STaR head), explicitly
    leaving = Agent(student, tokenizer, extensions=dict(entering.extensions))
    save_agent(leaving, outputs[MODEL_KEY])
    metrics: dict = {"extensions": sorted(leaving.extensions)}
    if bc.export_packed:
        outputs[PACKED_KEY] = stage_dir / PACKED_KEY
        cpu_agent = Agent(student.float().cpu(), tokenizer, extensions=dict(entering.extensions))
        save_agent(cpu_agent, outputs[PACKED_KEY], packed=True)
        packed_model, _ = load_packed(outputs[PACKED_KEY])
        reports["packed inference"] = evaluate(packed_model, tokenizer, tasks, batch_size=bc.eval_batch_size)
        size = packed_size_report(outputs[PACKED_KEY])
        latent_bytes = _weight_bytes(outputs[MODEL_KEY])
        layer_weights = size["ternary_weights"]
        size.update({
            "fp32_model_bytes": latent_bytes,
            "model_shrink_ratio": round(latent_bytes / size["file_bytes"], 2),
            "linear_shrink_ratio": round(4 * layer_weights / (size["packed_weight_bytes"] + size["scale_bytes"]), 2),
            "bits_per_weight": round(size["bits_per_weight"], 4),
        })
        metrics["size"] = size
        metrics["packed_max_logit_gap"] = _max_logit_gap(student, packed_model, tokenizer, tasks)
        metrics["kernel"] = kernel_description()
        del packed_model

    console.print(accuracy_table(reports, title="bitnet: test accuracy (%) before and after ternary conversion"))
    fp_acc = reports["full precision"].accuracy
    retained = round(reports["warm-up + distillation"].accuracy / fp_acc, 4) if fp_acc else None
    summary = {"accuracy": round(reports["warm-up + distillation"].accuracy, 2), "fp_accuracy": round(fp_acc, 2),
               "retained": retained}
    if "size" in metrics:
        summary["bits_per_weight"] = metrics["size"]["bits_per_weight"]
        # never silent: `agent-forge status` shows whether the packed path ran on the C kernel or the fallback
        summary["kernel"] = "C" if metrics["kernel"].startswith("C kernel") else "torch fallback"
    metrics = {"summary": summary, **metrics}
    metrics.update({
        "accuracy": {name: round(r.accuracy, 2) for name, r in reports.items()},
        "retained_fraction": retained,
        "eval": {name: r.to_dict() for name, r in reports.items()},
        "train": {
            "steps": bc.train.steps,
            "final_loss": round(log.tail_mean(), 4),
            "seconds": round(train_seconds, 1),
            "lambda_reaches_one_at_step": next((i for i, lam in enumerate(lambdas) if lam >= 1.0), None),
        },
        "ternary": _ternary_stats(student),
    })
    return StageResult(models=outputs, metrics=metrics, trade_off=_trade_off(metrics))


def _trade_off(metrics: dict) -> str:
    """BitNet's declared trade: ternary weights, far smaller and faster to decode, for whatever accuracy it costs."""
    size = metrics.get("size")
    if size:
        return (f"1.58-bit ternary weights: decoder linears {size['linear_shrink_ratio']}x smaller "
                f"({size['bits_per_weight']} bits per weight), model file {size['model_shrink_ratio']}x smaller")
    return "1.58-bit ternary weights (BitNet b1.58) in place of full-precision linear layers"
