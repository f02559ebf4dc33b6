"""The bootstrap intervals against scipy's, and the properties a paired comparison must have."""

import numpy as np
import pytest
from scipy import stats

from agent_forge.evaluation.intervals import bootstrap_interval, paired_bootstrap


def test_interval_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(3)
    scores = (rng.random(400) < 0.62).astype(float)
    ours = bootstrap_interval(scores, resamples=20000, seed=1)
    ref = stats.bootstrap((scores,), np.mean, n_resamples=20000, method="percentile", random_state=2,
                          confidence_level=0.95).confidence_interval
    assert ours.mean == pytest.approx(100 * scores.mean())
    # two independent Monte Carlo estimates of the same quantiles: within a fraction of a point
    assert ours.low == pytest.approx(100 * ref.low, abs=0.6)
    assert ours.high == pytest.approx(100 * ref.high, abs=0.6)


def test_intervals_are_seeded_and_contain_the_mean():
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    first, second = bootstrap_interval(scores, seed=5), bootstrap_interval(scores, seed=5)
    assert first == second
    assert first.low <= first.mean <= first.high


def test_paired_difference_is_narrower_than_the_separate_intervals():
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.5).astype(float)
    b = a.copy()
    flip = rng.choice(500, size=25, replace=False)
    b[flip] = 1.0  # b = a plus a few more items right
    diff = paired_bootstrap(a, b, seed=0)
    assert diff.mean == pytest.approx(100 * (b.mean() - a.mean()))
    assert diff.low > 0  # every item b differs on, it gets right: the gain is clearly above zero
    separate = bootstrap_interval(b, seed=0)
    assert diff.high - diff.low < (separate.high - separate.low) / 2


def test_paired_needs_the_same_items():
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1, 0, 1])
    with pytest.raises(ValueError):
        bootstrap_interval([])
