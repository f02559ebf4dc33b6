"""The edge-of-chaos controller moves difficulty toward the target success band."""

from agent_forge.config.curriculum import ControllerConfig
from agent_forge.stages.curriculum.controller import DifficultyController, PerDomainDifficulty


def test_too_easy_raises_difficulty_and_too_hard_lowers_it():
    ctl = DifficultyController(low=0.55, high=0.75, step=0.1, difficulty=0.5, smoothing=0.0)
    assert ctl.update(0.95) > 0.5
    ctl = DifficultyController(low=0.55, high=0.75, step=0.1, difficulty=0.5, smoothing=0.0)
    assert ctl.update(0.10) < 0.5


def test_inside_the_band_difficulty_holds_and_bounds_are_respected():
    ctl = DifficultyController(low=0.55, high=0.75, step=0.3, difficulty=0.5, smoothing=0.0)
    assert ctl.update(0.65) == 0.5
    for _ in range(10):
        ctl.update(1.0)
    assert ctl.difficulty == 1.0
    for _ in range(10):
        ctl.update(0.0)
    assert ctl.difficulty == 0.0


def test_smoothing_needs_evidence_before_reacting():
    ctl = DifficultyController(low=0.55, high=0.75, step=0.1, difficulty=0.5, smoothing=0.8)
    ctl.update(0.65)
    # one lucky cycle does not push the smoothed rate out of the band
    assert ctl.update(0.9) == 0.5
    for _ in range(10):
        ctl.update(0.9)
    assert ctl.difficulty > 0.5


def test_closed_loop_settles_success_into_the_band():
    # a simulated learner: success falls linearly as difficulty rises
    ctl = DifficultyController.from_config(ControllerConfig(step=0.05, smoothing=0.3))
    rates = []
    for _ in range(60):
        rate = 1.0 - 0.8 * ctl.difficulty
        rates.append(rate)
        ctl.update(rate)
    assert all(0.5 <= r <= 0.8 for r in rates[-20:])


def test_reset_forgets_the_old_level():
    ctl = DifficultyController(smoothing=0.5)
    ctl.update(0.1)
    ctl.reset(0.7)
    assert ctl.difficulty == 0.7 and ctl.smoothed_rate is None


def test_floor_keeps_a_share_of_prompts_at_the_level_being_learned():
    ctl = DifficultyController(step=0.2, difficulty=0.5, smoothing=0.0, min_difficulty=0.25)
    for _ in range(10):
        ctl.update(0.0)
    assert ctl.difficulty == 0.25


def test_each_domain_moves_its_own_difficulty():
    ctl = PerDomainDifficulty.from_config(ControllerConfig(step=0.1, smoothing=0.0, initial=0.5, min_difficulty=0.2))
    for _ in range(3):
        ctl.update({"arithmetic": 0.95, "logic": 0.05})
    d = ctl.difficulties(["arithmetic", "logic", "strings"])
    assert d["arithmetic"] > 0.5 > d["logic"] >= 0.2
    assert d["strings"] == 0.5  # no samples yet: still at the initial difficulty
    ctl.reset(0.5)
    assert ctl.difficulties(["arithmetic"]) == {"arithmetic": 0.5}
