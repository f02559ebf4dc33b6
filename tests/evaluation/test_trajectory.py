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


def test_the_measurement_keeps_every_suite_item_score_in_item_order(tiny_model, tiny_tokenizer, tmp_path):
    from agent_forge.evaluation.trajectory import items_digest

    folder = save_model(tiny_model, tiny_tokenizer, tmp_path / "m")
    cfg = _report_cfg(items_per_level=2, levels="[1,2]", speed_prompts=2, speed_tokens=3)
    suite = measure_agent(folder, cfg, seed=0)["suite"]
    tasks = suite_tasks(cfg, 0)
    expected = evaluate(tiny_model, tiny_tokenizer, tasks)
    assert suite["scores"] == [int(s) for *_, s in expected.items]
    assert suite["items_digest"] == items_digest([t.task_id for t in tasks])
    assert [d for d, count in suite["domains"] for _ in range(count)] == [t.domain for t in tasks]


def _scored(scores, domains, digest="d"):
    runs = []
    for d in domains:
        if runs and runs[-1][0] == d:
            runs[-1][1] += 1
        else:
            runs.append([d, 1])
    by_domain = {}
    for d, s in zip(domains, scores):
        by_domain.setdefault(d, []).append(s)
    mean = sum(100 * sum(v) / len(v) for v in by_domain.values()) / len(by_domain)
    return {"suite": {"domain_mean": round(mean, 2), "scores": scores, "domains": runs, "items_digest": digest}}


def test_the_change_gets_a_paired_interval_on_the_domain_mean():
    from agent_forge.evaluation.intervals import paired_bootstrap

    domains = ["a"] * 6 + ["b"] * 6
    before = _scored([1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0], domains)
    after = _scored([1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0], domains)
    result = compare(before, after, max_drop=2.0, trade_off=None)
    interval = result["change_interval"]
    assert interval["low"] <= interval["mean"] <= interval["high"]
    assert abs(interval["mean"] - result["change"]) < 0.01  # equal items per domain: item mean = domain mean
    same = paired_bootstrap(before["suite"]["scores"], after["suite"]["scores"])
    assert interval == same.to_dict()


def test_unequal_domains_are_weighted_to_the_domain_mean():
    from agent_forge.evaluation.trajectory import paired_change

    domains = ["a"] * 2 + ["b"] * 6
    before = _scored([0] * 8, domains)
    after = _scored([1, 1, 0, 0, 0, 0, 0, 0], domains)  # domain a 100, b 0: domain mean 50, item mean 25
    assert paired_change(before, after).mean == after["suite"]["domain_mean"] == 50.0


def test_old_or_mismatched_measurements_have_no_interval():
    domains = ["a"] * 4
    scored = _scored([1, 0, 1, 0], domains)
    assert compare(_m(50.0), scored, max_drop=2.0, trade_off=None)["change_interval"] is None  # recorded before scores
    other_items = _scored([1, 1, 1, 0], domains, digest="other")
    assert compare(other_items, scored, max_drop=2.0, trade_off=None)["change_interval"] is None
