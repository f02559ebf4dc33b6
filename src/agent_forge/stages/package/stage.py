"""Stage 5.1 run: the previous stage's agent in, the deployable bundle `agent/` out.

Steps: load the entering agent (CPU, fp32) and measure it on the suite (fast path, validation and test);
write the bundle with `save_agent` (packed for a ternary agent); load it back with `load_agent` and measure it
again (the evaluation must equal the entering agent's item for item); measure int8 embeddings / LM head on
the loaded bundle in memory and, when validation is unchanged item for item (and the bundle is packed, whose
loader reads int8 rows), store them in the model file; write `bundle.json` last and check it loads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ForgeError
from ...evaluation import evaluate
from ...models import Agent, load_agent, save_agent
from ...models.formats.bundle import MANIFEST, ROW_SCALE, dequantize_rows, int8_rows, write_manifest
from ...models.formats.ternary.packed import PACKED_FILE
from ...stage_contract import StageContext, StageResult
from ...tasks import task_grid

AGENT_KEY = "agent"


def suite(pc, split: str, n: int, seed: int) -> list:
    """The bundle's evaluation set: every configured domain and level of one split."""
    return task_grid(pc.domains, pc.levels, split, n, seed, world_seed=seed)


def _items(report) -> list:
    return [tuple(item) for item in report.items]


def embedding_keys(model) -> list[str]:
    """State-dict keys of the input embeddings and (when it is a separate tensor) the LM head."""
    wanted = []
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    for module in (inp, out):
        if module is None or any(module.weight is w for w in wanted):
            continue
        wanted.append(module.weight)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=True)}
    return [names[id(w)] for w in wanted if id(w) in names]


@torch.no_grad()
def int8_in_memory(model) -> dict[str, torch.Tensor]:
    """Replace the embedding / head weights by their int8 round trip in place; returns the originals."""
    params = dict(model.named_parameters())
    originals = {}
    for key in embedding_keys(model):
        weight = params[key]
        originals[key] = weight.detach().clone()
        weight.copy_(dequantize_rows(*int8_rows(weight)))
    return originals


@torch.no_grad()
def restore(model, originals: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for key, value in originals.items():
        params[key].copy_(value)


def store_int8(bundle: Path, keys: list[str]) -> None:
    """Rewrite the packed model file with `keys` as int8 rows + `<key>_row_scale` (the packed loader reads them)."""
    from safetensors.torch import load_file, save_file

    file = bundle / PACKED_FILE
    tensors = load_file(str(file))
    for key in keys:
        if key not in tensors:
            raise ForgeError(f"{file} has no tensor {key!r} to store as int8")
        codes, scale = int8_rows(tensors[key])
        tensors[key] = codes.contiguous()
        tensors[key + ROW_SCALE] = scale.contiguous()
    temp = file.with_name(file.name + ".int8.tmp")
    save_file(tensors, str(temp), metadata={"format": "pt", "int8_rows": ",".join(keys)})
    temp.replace(file)


def int8_changed(a, b) -> int:
    """How many items two reports of the same task list score differently."""
    return sum(x != y for x, y in zip(_items(a), _items(b)))


def _evaluation(report, entering_report) -> dict:
    return {**report.to_dict(), "method": "fast", "split": "test",
            "equals_entering": _items(report) == _items(entering_report)}


def run(ctx: StageContext) -> StageResult:
    cfg, pc = ctx.cfg, ctx.cfg.package
    source = ctx.input_model(pc.input_key)
    entering = load_agent(source, device="cpu", dtype=torch.float32)
    if entering.packed:
        raise ForgeError(f"{source} is already a packed export; bundle the latent ternary checkpoint it came from")
    tok = entering.tokenizer
    val, test = (suite(pc, "val", pc.val_items_per_level, cfg.seed), suite(pc, "test", pc.test_items_per_level, cfg.seed))
    bs = pc.eval_batch_size
    enter_val, enter_test = evaluate(entering.model, tok, val, batch_size=bs), evaluate(entering.model, tok, test, batch_size=bs)

    bundle = ctx.stage_dir / AGENT_KEY
    packed = entering.ternary
    save_agent(Agent(entering.model, tok, extensions=dict(entering.extensions)), bundle, packed=packed)
    loaded = load_agent(bundle)
    bundle_val = evaluate(loaded.model, loaded.tokenizer, val, batch_size=bs)
    bundle_test = evaluate(loaded.model, loaded.tokenizer, test, batch_size=bs)
    if _items(bundle_test) != _items(enter_test) or _items(bundle_val) != _items(enter_val):
        # recorded (`evaluation.equals_entering` false) and said loudly; the runner's trajectory shows the change
        ctx.log.warning("the bundle at %s does not reproduce the entering agent's evaluation item for item "
                        "(%.2f%% vs %.2f%% on test)", bundle, bundle_test.accuracy, enter_test.accuracy)

    int8 = {"mode": pc.int8_embeddings, "applied": False}
    if pc.int8_embeddings != "off":
        keys = embedding_keys(loaded.model)
        originals = int8_in_memory(loaded.model)
        q_val = evaluate(loaded.model, loaded.tokenizer, val, batch_size=bs)
        q_test = evaluate(loaded.model, loaded.tokenizer, test, batch_size=bs)
        restore(loaded.model, originals)
        fp_bytes = sum(v.numel() * 4 for v in originals.values())
        int8_bytes = sum(v.numel() + v.shape[0] * 4 for v in originals.values())
        same_val = _items(q_val) == _items(bundle_val)
        apply = packed and (pc.int8_embeddings == "always" or (pc.int8_embeddings == "auto" and same_val))
        int8.update({
            "tensors": keys, "fp32_bytes": fp_bytes, "int8_bytes": int8_bytes,
            "val_accuracy": {"fp32": round(bundle_val.accuracy, 2), "int8": round(q_val.accuracy, 2)},
            "test_accuracy": {"fp32": round(bundle_test.accuracy, 2), "int8": round(q_test.accuracy, 2)},
            "val_items_changed": int8_changed(q_val, bundle_val),
            "test_items_changed": int8_changed(q_test, bundle_test),
            "applied": apply,
            "decision": (("applied: validation unchanged item for item" if same_val else "applied (config: always)")
                         if apply else
                         "not applied: " + ("the bundle is not packed (only the packed loader reads int8 rows)"
                                            if not packed else "measure only (config)"
                                            if pc.int8_embeddings == "measure" else
                                            f"{int8_changed(q_val, bundle_val)} validation item(s) changed")),
        })
        if apply:
            store_int8(bundle, keys)
            bundle_test = q_test
        ctx.log.info("int8 embeddings / head: %s (val %s -> %s, test %s -> %s)", int8["decision"],
                     int8["val_accuracy"]["fp32"], int8["val_accuracy"]["int8"],
                     int8["test_accuracy"]["fp32"], int8["test_accuracy"]["int8"])
    del loaded

    evaluation = _evaluation(bundle_test, enter_test)
    run_dir = ctx.stage_dir.parent
    manifest = write_manifest(bundle, {
        "packed": packed, "ternary": entering.ternary, "extensions": sorted(entering.extensions),
        "int8_embeddings": int8, "evaluation": evaluation,
        "entering_evaluation": enter_test.to_dict(),
        "source": {"run": run_dir.name, "input": _relative(source, run_dir), "config_digest": cfg.digest(),
                   "seed": cfg.seed},
    })
    final = load_agent(bundle)  # verifies bundle.json and reloads what a user gets
    if int8["applied"]:
        final_test = evaluate(final.model, final.tokenizer, test, batch_size=bs)
        if _items(final_test) != _items(bundle_test):
            raise ForgeError(f"the int8 bundle at {bundle} does not reproduce its in-memory evaluation")
    described = final.describe()
    del final

    parts = manifest["parts"]
    summary = {"accuracy": evaluation["accuracy"], "equals_entering": evaluation["equals_entering"],
               "bundle_mb": round(manifest["total_bytes"] / 1e6, 3), "int8": "applied" if int8["applied"] else "not applied"}
    ctx.console.print(f"package: bundle {bundle} ({manifest['total_bytes']:,} bytes; "
                      + ", ".join(f"{k} {v:,}" for k, v in parts.items() if v) + f"); test accuracy "
                      f"{evaluation['accuracy']:.2f}% (entering {enter_test.accuracy:.2f}%); int8 embeddings: "
                      f"{int8.get('decision', 'off')}")
    metrics = {
        "summary": summary, "bundle": AGENT_KEY, "packed": packed, "extensions": sorted(entering.extensions),
        "parts": parts, "total_bytes": manifest["total_bytes"], "files": len(manifest["files"]),
        "evaluation": evaluation, "entering_evaluation": enter_test.to_dict(), "int8_embeddings": int8,
        "agent": described, "manifest": MANIFEST,
    }
    return StageResult(models={AGENT_KEY: bundle}, metrics=metrics, trade_off=_trade_off(packed, entering))


def _trade_off(packed: bool, entering) -> str | None:
    """What a packed bundle gives up: expert vectors scale latent weights, which 2-bit packed layers do not
    keep; the bundle applies them as a rank-r correction beside the packed matmul (option (b)) instead."""
    if packed and "experts" in entering.extensions:
        return ("2-bit packed bundle (the deployable size) applies its experts as a rank-r correction beside the "
                "packed matmul: expert vectors need the latent weights, which the packed layers do not keep, so "
                "dispatched answers approximate the latent agent's (top singular directions, not re-quantized)")
    return None


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
