"""Run the Quiet-STaR stage alone on one entering model under several config variants, side by side.

    python scripts/ablate_quietstar.py runs/tiny/01-evomerge/model \
        "quietstar.train.lr=0.0003,quietstar.anchor_kl=0" "quietstar.anchor_kl=0"

Each variant is a comma-separated list of `key=value` overrides on the packaged `tiny` config (the no-thought
control is switched off to save time). Prints, per variant, the multi-step test accuracy of the entering model,
of the trained model thinking and with thinking off, and the mean anchor KL at the end of training. Outputs go
to a temporary folder; one torch thread.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from rich.console import Console

from agent_forge.config import load_config
from agent_forge.stages import StageContext, StageInputs
from agent_forge.stages.quietstar import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the entering model (e.g. runs/tiny/01-evomerge/model)")
    ap.add_argument("variants", nargs="+", help="comma-separated overrides per variant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        for number, variant in enumerate(args.variants):
            overrides = [v for v in variant.split(",") if v]
            cfg = load_config("tiny", [*overrides, "quietstar.compare_without_thoughts=false", "threads=1"])
            stage_dir = Path(scratch) / f"variant{number}" / "02-quietstar"
            stage_dir.mkdir(parents=True)
            ctx = StageContext.create("quietstar", cfg, StageInputs(models={"model": args.model}), stage_dir,
                                      console=Console(quiet=True))
            m = run(ctx).metrics
            q = m["quietstar"]
            print(f"{variant or '(defaults)'}: entering {m['input_model']['test_multistep_accuracy']:.2f}, "
                  f"thinking {q['test_multistep_accuracy']:.2f}, thinking off {q['test_multistep_accuracy_no_thinking']:.2f}, "
                  f"anchor KL {q['train_tail'].get('anchor_kl', 0.0):.4f}", flush=True)


if __name__ == "__main__":
    main()
