"""Run the tools stage alone on one entering model under config variants, and print what each did.

    python scripts/ablate_tools.py runs/tiny/05-experts/model "tools.sample_by_domain=true,tools.sft_steps=2000"

Each variant is a comma-separated list of `key=value` overrides on the packaged `tiny` config. Prints, per
variant, test accuracy with tools for every domain (and arithmetic levels 5-10, facts levels 1-10), the share of
answers that call a tool, and the supervised loss at the end. Outputs go to a temporary folder; `--threads`
torch threads (default 1).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from rich.console import Console

from agent_forge.config import load_config
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.tools import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the entering model (e.g. runs/tiny/05-experts/model)")
    ap.add_argument("variants", nargs="+", help="comma-separated overrides per variant")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        for number, variant in enumerate(args.variants):
            overrides = [v for v in variant.split(",") if v]
            cfg = load_config("tiny", overrides)
            stage_dir = Path(scratch) / f"variant{number}" / "07-tools"
            stage_dir.mkdir(parents=True)
            ctx = StageContext.create("tools", cfg, StageInputs(models={"model": args.model}), stage_dir,
                                      console=Console(quiet=True))
            m = run(ctx).metrics
            summary, test = m["summary"], m["test"]
            domains = ", ".join(f"{d} {test[d]['entering']:.1f} -> {test[d]['with_tools']:.1f} "
                                f"(calls {test[d]['call_share']:.1f}%)" for d in test)
            print(f"{variant or '(defaults)'}: {domains}; arithmetic 5-10 {summary['arithmetic_5_10_with_tools']:.2f}, "
                  f"facts 1-10 {summary['facts_with_memory']:.2f}; facts by level "
                  + "/".join(f"{v['with_tools']:.0f}" for v in test["facts"]["levels"].values())
                  + f"; kept {m['chosen']}, sft loss {m['training']['sft']['loss_last']}", flush=True)


if __name__ == "__main__":
    main()
