"""What one `agent-forge learn` does: the cycles on logged experience, the held-out set, the promotion gate.

`LearnSettings` is a frozen dataclass (the CLI fills it from its options); the defaults fit the tiny profile on
one CPU thread. Its `digest()` names a plan: a resumed `learn` continues only a plan made with the same
settings (any other setting starts over).

Exercise: `pytest tests/learning/test_learn_cli.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LearnSettings:
    # cycles (the curriculum's update: group policy gradient + demonstrations + replay, then sleep)
    cycles: int = 30
    prompts_per_cycle: int = 16  # logged prompts rolled out per cycle
    samples_per_prompt: int = 4  # the group of the group baseline
    temperature: float = 1.0
    max_new_tokens: int = 24  # cap; each cycle uses the longest reference answer plus a margin
    lr: float = 2e-3  # the supervised steps (demonstrations, replay, sleep)
    pg_lr: float = 2e-4  # the policy-gradient step (the curriculum's rate: at the demonstrations' rate, the
    # negative advantages of a known level's wrong samples tore that level down: 100% -> 13% on arithmetic 1)
    warmup_steps: int = 5
    kl_coef: float = 0.05  # KL to the deployed version
    demos_per_step: int = 32  # references of verified failures and corrections per step
    replay_per_step: int = 16  # verified successes (logged and found while learning) per step
    demo_steps: int = 3  # extra supervised steps per cycle
    sleep_every: int = 10  # cycles between sleeps (replay then averaging toward the last sleep's weights)
    sleep_steps: int = 4
    sleep_batch: int = 32
    sleep_average: float = 0.3
    # rehearsal (`learning.rehearsal`): the deployed agent's own verified answers across the suite
    rehearsal_per_cell: int = 64  # fresh train tasks checked per (domain, level) of the suite; the right ones kept
    rehearsal_share: float = 0.4  # share of every supervised batch that is rehearsal
    checkpoint_every: int = 2  # cycles between resume checkpoints
    # evaluation and the promotion gate
    heldout_per_cell: int = 100  # fresh test-split tasks per (domain, level) of the logged distribution
    min_cell_share: float = 0.05  # cells with a smaller share of the placed logged tasks are left out
    suite_items: int = 20  # test tasks per domain and level of the full suite (the trajectory's default)
    min_heldout_gain: float = 0.0  # held-out accuracy must rise by more than this (points)
    max_suite_drop: float = 1.0  # the suite's domain mean may fall by at most this (points)
    canary_per_domain: int = 6
    seed: int = 0
    threads: int = 1

    def digest(self) -> str:
        text = json.dumps({k: v for k, v in asdict(self).items() if k != "threads"}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
