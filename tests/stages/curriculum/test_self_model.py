"""Self-modeling: confidence is a probability, and training on own-correctness labels improves calibration."""

import copy

from agent_forge.stages.curriculum.self_model import measure_calibration, predict_confidence, self_model_round
from agent_forge.evaluation import fast_exact_match
from agent_forge.tasks import make_tasks
from agent_forge.training.policy_gradient import PolicyGradientTrainer


def _balanced(model, tok, split, n):
    """As many tasks the model gets right as wrong, so calibration has something to measure."""
    pool = [t for d in ("arithmetic", "logic") for t in make_tasks(d, 1, split, n, 0)]
    right = fast_exact_match(model, tok, pool)
    good = [t for t, ok in zip(pool, right) if ok]
    bad = [t for t, ok in zip(pool, right) if not ok][: len(good)]
    assert len(good) >= 4
    return good + bad


def test_confidence_is_a_probability(trained_tiny):
    _, model, tok = trained_tiny
    conf = predict_confidence(model, tok, ["1+2 (digits reversed)", "sort 3 1", "min 4 2"])
    assert len(conf) == 3 and all(0.0 < c < 1.0 for c in conf)


def test_self_model_round_lowers_calibration_error(trained_tiny):
    _, model, tok = trained_tiny
    model = copy.deepcopy(model)
    train = _balanced(model, tok, "train", 60)
    held_out = _balanced(model, tok, "val", 40)
    before = measure_calibration(model, tok, held_out)
    trainer = PolicyGradientTrainer(model, tok, lr=3e-3, warmup_steps=0)
    step = lambda pairs: trainer.step([], [], [], [], demonstrations=list(pairs)).demo_loss
    info = self_model_round(model, tok, train, temperatures=[0.5, 1.0], steps=40, seed=0, max_new_tokens=8,
                            train_step=step)
    after = measure_calibration(model, tok, held_out)
    assert set(info["success_by_temperature"]) == {"0.5", "1.0"}
    assert after["ece"] < before["ece"] - 0.05, (before["ece"], after["ece"])
