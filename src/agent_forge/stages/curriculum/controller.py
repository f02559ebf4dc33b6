"""Edge-of-chaos difficulty inside a curriculum level: keep the success rate inside a target band.

Difficulty is a number in [0, 1]: the share of a level's synthetic prompts drawn at the level's own task
level rather than at the (already mastered) level below it. Succeeding too often means the batch teaches
little, so difficulty rises; failing too often means the reward is mostly zero, so it falls. The observed
success rate is smoothed with an exponential moving average because one cycle's groups are noisy. `min_difficulty` keeps a
share of the prompts at the level being learned however hard it is, so the level is never starved.

Each domain has its own controller (`PerDomainDifficulty`): domains sit at different distances from their
next level, and one global rate would let a domain that is failing drag every other domain's prompts down
to levels they have already mastered.

Exercise: `pytest tests/stages/curriculum/test_controller.py`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field


@dataclass
class DifficultyController:
    """Moves `difficulty` by `step` per update toward the band [low, high] of the smoothed success rate."""

    low: float = 0.55
    high: float = 0.75
    step: float = 0.15
    difficulty: float = 0.5
    smoothing: float = 0.5
    smoothed_rate: float | None = None
    min_difficulty: float = 0.0

    def update(self, success_rate: float) -> float:
        """Record one cycle's success rate and return the difficulty for the next cycle."""
        if self.smoothed_rate is None:
            self.smoothed_rate = success_rate
        else:
            self.smoothed_rate = self.smoothing * self.smoothed_rate + (1 - self.smoothing) * success_rate
        if self.smoothed_rate > self.high:
            self.difficulty = min(1.0, self.difficulty + self.step)
        elif self.smoothed_rate < self.low:
            self.difficulty = max(self.min_difficulty, self.difficulty - self.step)
        return self.difficulty

    def reset(self, difficulty: float) -> None:
        """Start a new level: forget the old level's success rate."""
        self.difficulty = max(self.min_difficulty, difficulty)
        self.smoothed_rate = None

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg) -> "DifficultyController":
        return cls(low=cfg.low, high=cfg.high, step=cfg.step, difficulty=max(cfg.min_difficulty, cfg.initial),
                   smoothing=cfg.smoothing, min_difficulty=cfg.min_difficulty)


@dataclass
class PerDomainDifficulty:
    """One `DifficultyController` per domain, each created from `template` the first time its domain is seen."""

    template: DifficultyController
    controllers: dict[str, DifficultyController] = field(default_factory=dict)

    def _get(self, domain: str) -> DifficultyController:
        if domain not in self.controllers:
            self.controllers[domain] = copy.deepcopy(self.template)
        return self.controllers[domain]

    def difficulties(self, domains) -> dict[str, float]:
        return {d: self._get(d).difficulty for d in domains}

    def update(self, success_by_domain: dict[str, float]) -> None:
        """Record each domain's success rate of one cycle (domains without samples keep their difficulty)."""
        for domain, rate in success_by_domain.items():
            self._get(domain).update(rate)

    def forget(self, domain: str) -> None:
        """`domain` moves to a new task level: its controller starts again from the template."""
        self.controllers.pop(domain, None)

    def reset(self, difficulty: float) -> None:
        """Start a new level: every domain starts again from `difficulty`."""
        self.template.reset(difficulty)
        self.controllers.clear()

    @classmethod
    def from_config(cls, cfg) -> "PerDomainDifficulty":
        return cls(DifficultyController.from_config(cfg))
