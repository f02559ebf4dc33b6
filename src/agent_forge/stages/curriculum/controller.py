"""Edge-of-chaos difficulty inside a curriculum level: keep the success rate inside a target band.

Difficulty is a number in [0, 1]: the share of a level's synthetic prompts drawn at the level's own task
level rather than at the (already mastered) level below it. Succeeding too often means the batch teaches
little, so difficulty rises; failing too often means the reward is mostly zero, so it falls. The observed
success rate is smoothed with an exponential moving average because one cycle's groups are noisy.

Exercise: `pytest tests/stages/curriculum/test_controller.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class DifficultyController:
    """Moves `difficulty` by `step` per update toward the band [low, high] of the smoothed success rate."""

    low: float = 0.55
    high: float = 0.75
    step: float = 0.15
    difficulty: float = 0.5
    smoothing: float = 0.5
    smoothed_rate: float | None = None

    def update(self, success_rate: float) -> float:
        """Record one cycle's success rate and return the difficulty for the next cycle."""
        if self.smoothed_rate is None:
            self.smoothed_rate = success_rate
        else:
            self.smoothed_rate = self.smoothing * self.smoothed_rate + (1 - self.smoothing) * success_rate
        if self.smoothed_rate > self.high:
            self.difficulty = min(1.0, self.difficulty + self.step)
        elif self.smoothed_rate < self.low:
            self.difficulty = max(0.0, self.difficulty - self.step)
        return self.difficulty

    def reset(self, difficulty: float) -> None:
        """Start a new level: forget the old level's success rate."""
        self.difficulty = difficulty
        self.smoothed_rate = None

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg) -> "DifficultyController":
        return cls(low=cfg.low, high=cfg.high, step=cfg.step, difficulty=cfg.initial, smoothing=cfg.smoothing)
