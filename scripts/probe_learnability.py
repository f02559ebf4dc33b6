"""How far plain supervised training on one task level gets a model: an upper bound for the curriculum.

Trains a copy of MODEL on fresh train-split tasks of DOMAIN at LEVEL (the worked answers, cross-entropy on the
answer tokens, batch 32, through the curriculum's own optimiser with its warm-up) and prints validation accuracy
in percent (fast path, 48 items) every 20 steps. The curriculum
spends its budget on rollouts, several domains and consolidation, so a level that this probe cannot lift
within a few hundred steps will not be mastered by the curriculum within its time budget either.
A ternary model saved by the bitnet stage is trained as ternary (latent weights, straight-through).
`--worked N` shows N of each batch's items in the worked-steps form Quiet-STaR trained (`<prompt> (show steps)`
answered by `<steps> => <answer>`), as an auxiliary task in the manner of distilling step-by-step;
`--statements N` fills N of each batch with the knowledge base's fact sentences (what pretraining read), the
knowledge a closed-book `facts` question needs. `--mix-with DOMAIN:LEVEL` (repeatable) gives half of each
batch to those levels, evenly, the way a curriculum cycle's demonstrations mix domains, and reports their
validation accuracy too.

    python scripts/probe_learnability.py runs/tiny/03-bitnet/model --domain logic --level 5 --steps 160
    python scripts/probe_learnability.py runs/tiny/03-bitnet/model --domain facts --level 1 --statements 16 --lr 1e-3
    python scripts/probe_learnability.py runs/tiny/03-bitnet/model --domain arithmetic --level 1 --steps 60 \
        --mix-with logic:4 --mix-with strings:5 --mix-with facts:1
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from agent_forge.stages.curriculum.assessment import level_accuracy
from agent_forge.stages.curriculum.episodes import sample_train_task
from agent_forge.evaluation import percent
from agent_forge.models import load_agent
from agent_forge.stages.quietstar.data import worked_pair
from agent_forge.tasks import knowledge_base_for
from agent_forge.training.policy_gradient import PolicyGradientTrainer

BATCH = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--level", type=int, required=True)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worked", type=int, default=0, help="items per batch shown with their worked steps")
    ap.add_argument("--statements", type=int, default=0, help="knowledge-base sentences per batch (plain text)")
    ap.add_argument("--mix-with", action="append", default=[], metavar="DOMAIN:LEVEL",
                    help="another level trained in the same batches (repeatable; half of each batch in all)")
    args = ap.parse_args()
    try:
        others = [(d, int(lvl)) for d, _, lvl in (spec.partition(":") for spec in args.mix_with)]
    except ValueError:
        ap.error("--mix-with takes DOMAIN:LEVEL, e.g. logic:4")
    if args.worked + args.statements > BATCH:
        ap.error(f"--worked plus --statements must be at most the batch size {BATCH}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    agent = load_agent(args.model)
    model, tok, ternary = agent.model, agent.tokenizer, agent.ternary
    rng = random.Random(args.seed)

    statements = knowledge_base_for(args.seed).statements()

    def batch():
        # a statement is an answer to the empty prompt: the loss covers the whole sentence
        pairs = [("", rng.choice(statements)) for _ in range(args.statements)]
        mixed = (BATCH - args.statements) // 2 if others else 0
        for i in range(mixed):
            task = sample_train_task(*others[i % len(others)], rng, args.seed)
            pairs.append((task.prompt, task.answer))
        for i in range(BATCH - args.statements - mixed):
            task = sample_train_task(args.domain, args.level, rng, args.seed)
            worked = worked_pair(task) if i < args.worked else None
            pairs.append(worked or (task.prompt, task.answer))
        return pairs

    def val() -> str:
        probed = [(args.domain, args.level)] + others
        scores = [percent(level_accuracy(model, tok, d, lvl, "val", 48, args.seed)) for d, lvl in probed]
        if not others:
            return f"{scores[0]:.1f}%"
        return " ".join(f"{d}:{lvl} {a:.1f}%" for (d, lvl), a in zip(probed, scores))

    print(f"{args.model} ({'ternary' if ternary else 'full precision'}): {args.domain} level {args.level}, "
          f"lr {args.lr}, worked {args.worked}, statements {args.statements}, mixed with {others or 'nothing'}; "
          f"step 0: val {val()}")
    trainer = PolicyGradientTrainer(model, tok, lr=args.lr, kl_coef=0.0, warmup_steps=10)
    for step in range(1, args.steps + 1):
        trainer.step([], [], [], [], demonstrations=batch())
        if step % 20 == 0 or step == args.steps:
            print(f"step {step}: val {val()}", flush=True)


if __name__ == "__main__":
    main()
