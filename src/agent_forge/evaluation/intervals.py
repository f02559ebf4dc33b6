"""Confidence intervals for accuracies: percentile bootstrap over items, alone and paired.

`bootstrap_interval(scores)` resamples the items of one evaluation; `paired_bootstrap(a, b)` resamples the same
items for two models or designs scored on them (the difference of a paired comparison, whose interval is far
narrower than the two separate ones when the two agree on most items). Both are seeded (same numbers every
run) and vectorised with numpy; `tests/evaluation/test_intervals.py` checks them against
`scipy.stats.bootstrap` (percentile method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean (percent when the scores are 0/1 and `scale` is 100) and its confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return {"mean": round(self.mean, 3), "low": round(self.low, 3), "high": round(self.high, 3),
                "confidence": self.confidence}

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


def _percentile_interval(values: np.ndarray, resamples: int, confidence: float, seed: int, scale: float) -> Interval:
    if values.size == 0:
        raise ValueError("an interval needs at least one score")
    rng = np.random.default_rng(seed)
    # resample in chunks: 2000 x 10k items would be 160 MB of indices at once
    means = []
    chunk = max(1, 2_000_000 // values.size)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        idx = rng.integers(0, values.size, size=(count, values.size))
        means.append(values[idx].mean(axis=1))
    means = np.concatenate(means)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(scale * float(values.mean()), scale * float(low), scale * float(high), confidence)


def bootstrap_interval(scores: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                       scale: float = 100.0) -> Interval:
    """The mean of `scores` (x `scale`) with its percentile-bootstrap interval over items."""
    return _percentile_interval(np.asarray(scores, dtype=np.float64), resamples, confidence, seed, scale)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0, scale: float = 100.0) -> Interval:
    """mean(b) - mean(a) over the same items (x `scale`), with its paired percentile-bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("a paired comparison needs the same items on both sides")
    return _percentile_interval(b - a, resamples, confidence, seed, scale)
