"""The trajectory measurement: what load_agent's model scores on the suite, its size and speed; the regression rule."""

from __future__ import annotations

from agent_forge.config import load_config
from agent_forge.evaluation import evaluate
from agent_forge.evaluation.trajectory import compare, is_agent_path, measure_agent, suite_tasks
from agent_forge.models import save_model


def _report_cfg(**overrides):
    return load_config(None, [f"report.{k}={v}" for k, v in overrides.items()]).report


def test_measurement_is_the_suite_accuracy_of_the_saved_model(tiny_model, tiny_tokenizer, tmp_path):
    folder = save_model(tiny_model, tiny_tokenizer, tmp_path / "m")
    cfg = _report_cfg(items_per_level=2, levels="[1,2]", speed_prompts=2, speed_tokens=3)
    measured = measure_agent(folder, cfg, seed=0)
    tasks = suite_tasks(cfg, 0)
    assert measured["suite"]["n"] == len(tasks) == 4 * 2 * 2
    assert measured["suite"]["accuracy"] == round(evaluate(tiny_model, tiny_tokenizer, tasks).accuracy, 2)
    assert set(measured["suite"]["by_domain"]) == {"arithmetic", "strings", "logic", "facts"}
    assert measured["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir())
    assert measured["decode_tokens_per_s"] > 0
    assert is_agent_path(folder) and not is_agent_path(tmp_path)


def _m(domain_mean):
    return {"suite": {"domain_mean": domain_mean}}


def test_a_drop_beyond_the_limit_is_a_regression_declared_only_with_a_trade_off():
    assert compare(None, _m(50.0), max_drop=2.0, trade_off=None)["change"] is None
    small = compare(_m(50.0), _m(48.5), max_drop=2.0, trade_off=None)
    assert small["change"] == -1.5 and not small["regression"]
    silent = compare(_m(50.0), _m(47.0), max_drop=2.0, trade_off=None)
    assert silent["regression"] and silent["undeclared"] and silent["declared"] is None
    declared = compare(_m(50.0), _m(40.0), max_drop=2.0, trade_off="ternary weights for size")
    assert declared["regression"] and not declared["undeclared"] and declared["declared"] == "ternary weights for size"
    gain = compare(_m(50.0), _m(60.0), max_drop=2.0, trade_off="anything")
    assert gain["change"] == 10.0 and not gain["regression"] and gain["declared"] is None
