"""Expert dispatch on the packed path (option (b)): decode time with vs without the rank-r correction, and the
bundle's expert bytes, side by side in one process.

A packed bundle is written from a latent ternary agent that carries experts (`save_agent(..., packed=True)`,
which keeps only the top `--rank` singular directions of each matrix), loaded back through the kernel, and
greedy decoding (batch 1, KV cache) is timed with the base weights and with one expert held as forward hooks
beside the packed layers, alternating the order over `--rounds`, on both packed paths: layer by layer
(transformers' generate over `PackedBitLinear`s, the correction as two torch ops per matrix) and the whole-step
C decoder that batch-1 greedy generation uses (the correction added inside its step). The issue's target:
dispatch adds at most 15% to decode time on the packed path. The full-rank correction is measured too.

    python benchmarks/bench_experts_packed.py                                   # runs/tiny/05-experts/model
    python benchmarks/bench_experts_packed.py --model PATH --rank 16 --new-tokens 64 --rounds 7

Without `--model` (or when the default run is absent) a model of the tiny profile's shape is built with
random experts: the timing does not depend on what the experts learned.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = Path("runs/tiny/05-experts/model")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _agent(model_path: Path | None, shape: str = "tiny"):
    """The latent ternary agent with experts: loaded, or built at the tiny profile's (or SmolLM2-135M's) shape
    with random weights and a random expert."""
    import torch

    from agent_forge.config.seed import TinyModelConfig
    from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, load_agent
    from agent_forge.models.formats.experts import ExpertSet, decompose_model, target_names, z_of
    from agent_forge.models.formats.ternary import convert_to_bitlinear
    from agent_forge.tasks import alphabet

    if model_path is not None:
        agent = load_agent(model_path)
        if "experts" not in agent.extensions or agent.packed:
            raise SystemExit(f"{model_path} is not a latent agent with experts")
        return agent, str(model_path)
    tok = build_tiny_tokenizer(alphabet())
    if shape == "smollm2":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_packed_decode import smollm2_shaped_model

        torch.manual_seed(0)
        model = smollm2_shaped_model()
    else:
        model = build_tiny_model(tok, TinyModelConfig(), seed=0)
    convert_to_bitlinear(model, sub_norm=True)
    names = target_names(model)
    dec = decompose_model(model, names)
    g = torch.Generator().manual_seed(0)
    experts = {"random": {n: z_of(torch.randn(d.rank, generator=g), 2.0) for n, d in dec.items()}}
    described = "SmolLM2-135M shape" if shape == "smollm2" else "tiny profile shape"
    return Agent(model, tok, extensions={"experts": ExpertSet(names, dec, experts, 2.0)}), f"{described}, random expert"


def _c_decode_rate(decoder, model, experts, expert, prompt, new_tokens: int, repeats: int = 5) -> tuple[float, float]:
    """(tokens per CPU second of greedy generations in the whole-step C decoder with `expert` held, CPU seconds
    of holding it: building the corrections and handing them to the decoder, once per request)."""
    start = time.process_time()
    with experts.using(model, expert):
        decoder.reset()
        decoder.feed(prompt[0].tolist()[:1])  # syncs the decoder's correction pointers
        setup = time.process_time() - start
        start = time.process_time()
        tokens = sum(len(decoder.greedy(prompt[0].tolist(), new_tokens)) for _ in range(repeats))
        return tokens / (time.process_time() - start), setup


def _decode_rate(model, experts, expert, prompt, new_tokens: int) -> float:
    """Tokens per CPU second of one greedy generation with `expert` held (None: base weights)."""
    import torch

    with torch.no_grad(), experts.using(model, expert):
        start = time.process_time()  # CPU time of this process: robust when other jobs share the CPU
        out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=0)
        return (out.shape[1] - prompt.shape[1]) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="latent agent folder with experts")
    parser.add_argument("--rank", type=int, default=16, help="singular directions the packed bundle keeps")
    parser.add_argument("--shape", choices=("tiny", "smollm2"), default="tiny",
                        help="without --model: the shape of the random model (smollm2: 30 layers, 90 expert matrices)")
    parser.add_argument("--no-full-rank", action="store_true", help="skip the full-rank correction")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from agent_forge.models import load_agent, save_agent
    from agent_forge.models.formats.ternary import PackedDecoder, kernel_description

    model_path = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_dir() and args.shape == "tiny" else None)
    latent, described = _agent(model_path, args.shape)
    experts = latent.extensions["experts"]
    expert = sorted(experts.experts)[0]
    full_rank = max(d.rank for d in experts.decomposition.values())
    print(f"model: {described}; expert {expert!r}; {len(experts.names)} matrices, full rank {full_rank}; "
          f"kernel: {kernel_description()}; 1 thread, {args.new_tokens} new tokens, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        latent_dir = Path(tmp) / "latent"
        save_agent(latent, latent_dir)
        print(f"latent agent: experts/ {_folder_bytes(latent_dir / 'experts'):,} bytes")
        for rank in dict.fromkeys([args.rank] + ([] if args.no_full_rank else [full_rank])):
            experts.packed_rank = rank
            folder = Path(tmp) / f"packed-r{rank}"
            save_agent(latent, folder, packed=True)
            packed = load_agent(folder)
            dispatch = packed.extensions["experts"]
            total, part = _folder_bytes(folder), _folder_bytes(folder / "experts")
            prompt = torch.randint(3, packed.model.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
            _decode_rate(packed.model, dispatch, expert, prompt, 4)  # warm-up: first-call allocations
            base, with_expert = [], []
            for r in range(args.rounds):  # alternate the order so drifting load hits both alike
                order = [(None, base), (expert, with_expert)]
                for name, rates in order if r % 2 == 0 else order[::-1]:
                    rates.append(_decode_rate(packed.model, dispatch, name, prompt, args.new_tokens))
            b, e = statistics.median(base), statistics.median(with_expert)
            print(f"packed, rank {rank:>4}: bundle {total:,} bytes (experts/ {part:,} = {part / total:.0%}); decode "
                  f"layer by layer (transformers generate): base {b:.1f} tok/s, with expert {e:.1f} tok/s; time "
                  f"ratio with/without {b / e:.3f} (+{100 * (b / e - 1):.1f}%)")
            decoder = PackedDecoder(packed.model)  # the path batch-1 greedy generation takes
            _c_decode_rate(decoder, packed.model, dispatch, expert, prompt, 4)
            base, with_expert, setups = [], [], []
            for r in range(args.rounds):
                order = [(None, base), (expert, with_expert)]
                for name, rates in order if r % 2 == 0 else order[::-1]:
                    rate, setup = _c_decode_rate(decoder, packed.model, dispatch, name, prompt, args.new_tokens)
                    rates.append(rate)
                    if name is not None:
                        setups.append(setup)
            b, e = statistics.median(base), statistics.median(with_expert)
            print(f"packed, rank {rank:>4}: decode in the whole-step C decoder: base {b:.1f} tok/s, with expert "
                  f"{e:.1f} tok/s; time ratio with/without {b / e:.3f} (+{100 * (b / e - 1):.1f}%); holding the "
                  f"expert costs {1e3 * statistics.median(setups):.2f} ms once per request "
                  f"(= {statistics.median(setups) * b:.0f} base tokens)")


if __name__ == "__main__":
    main()
