"""The experts stage end to end on a tiny ternary model: outputs, experts carried by the agent, determinism,
resume after a kill between experts, threshold choice, and the toy REINFORCE problem."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from agent_forge.config import ForgeConfig
from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, load_agent, save_agent
from agent_forge.models.formats.ternary import convert_to_bitlinear, is_ternary
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.experts import run as run_experts
from agent_forge.stages.experts import stage as stage_module
from agent_forge.stages.experts.stage import choose_threshold
from agent_forge.tasks import alphabet

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)
SMALL = {"domains": ["arithmetic", "strings"], "levels": [1], "steps": 2, "prompts_per_step": 2,
         "samples_per_prompt": 2, "max_new_tokens": 6, "val_every": 1, "val_items": 4, "test_items": 4,
         "router_items": 8, "classify_steps": 6, "reflection_items": 4, "reflection_max_new_tokens": 12,
         "reflection_steps": 2}


@pytest.fixture(scope="module")
def entering(tmp_path_factory):
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    convert_to_bitlinear(model, sub_norm=True)
    path = tmp_path_factory.mktemp("experts") / "entering"
    save_agent(Agent(model, tok), path)
    return path


def _run(source, stage_dir, **overrides):
    cfg = ForgeConfig.model_validate({"device": "cpu", "experts": SMALL | overrides})
    return run_experts(StageContext.create("experts", cfg, StageInputs(models={"model": source}), stage_dir))


def test_stage_writes_an_agent_with_experts_and_its_report(entering, tmp_path):
    result = _run(entering, tmp_path / "05-experts")
    m = result.metrics
    # self-reflection: counted per domain with worked steps; a reasoning expert exists exactly when it kept some
    r = m["reflection"]
    reasoning = r["kept_pairs"] > 0
    assert set(m["test_accuracy"]) == {"base", "arithmetic", "strings"} | ({"reasoning"} if reasoning else set())
    assert r["attempted"] == {"arithmetic": 4}  # reflection_items per level (level 1 only); strings 1 has no steps
    for d in r["attempted"]:
        assert r["failures"][d] + r["first_pass"][d] == r["attempted"][d]
        assert r["accepted"][d] <= r["rewritten_with_hint"][d] <= r["failures"][d]
    assert r["kept_pairs"] == sum(r["first_pass"].values()) + sum(r["accepted"].values())
    assert set(r["worked_test_accuracy"]) == {"base"} | ({"reasoning"} if reasoning else set())
    assert set(m["test_accuracy"]["arithmetic"]) == {"arithmetic", "strings", "mean"}  # cross-domain effects
    assert m["parameters"]["svf_expert"] < m["parameters"]["lora_rank16"]
    assert 0.0 <= m["routing"]["test_accuracy"] <= 100.0 and m["ternary"]
    assert m["packed_correction"]["rank"] == 16 and set(m["packed_correction"]["dropped_share"]) == {"arithmetic", "strings"}
    assert all(0.0 <= v <= 1.0 for v in m["packed_correction"]["dropped_share"].values())
    # the confidence policy: its thresholds, its test accuracy and who answered, beside the router threshold's
    policy, routing = m["routing"]["confidence_policy"], m["routing"]
    assert policy["enabled"] and 0.0 <= policy["base_above"] <= 1.01 and 0.0 <= policy["single_above"] <= 1.01
    assert set(policy["test_accuracy"]) == {"arithmetic", "strings", "mean"}
    assert set(policy["test_share"]) == {"base", "single", "mixture"}
    assert sum(policy["test_share"].values()) == pytest.approx(100.0, abs=0.1)
    assert policy["kept"] == (policy["val_accuracy"] > routing["threshold_val_accuracy"])
    assert routing["rule"] == ("confidence_policy" if policy["kept"] else "threshold")
    assert m["dispatched_accuracy"] == (policy["test_accuracy"] if policy["kept"] else routing["threshold_dispatched"])
    agent = load_agent(result.models["model"])
    assert (agent.extensions["experts"].policy is not None) == policy["kept"]
    if policy["kept"]:
        assert (agent.extensions["experts"].policy.base_above, agent.extensions["experts"].policy.single_above) == \
            (policy["base_above"], policy["single_above"])
    assert is_ternary(agent.model)
    experts = agent.extensions["experts"]
    assert experts.packed_rank == 16  # what a packed save of this agent keeps (option (b))
    assert sorted(experts.experts) == ["arithmetic", "strings"] and experts.router.classes == ["arithmetic", "strings"]
    # the model's own weights are the entering ones: experts are applied only at answer time
    entering_agent = load_agent(entering)
    for (n, a), (_, b) in zip(agent.model.state_dict().items(), entering_agent.model.state_dict().items()):
        assert torch.equal(a, b), n
    assert not (tmp_path / ".resume" / "05-experts").exists()
    # both applications trained and measured; validation chose the one the agent holds its experts as
    chosen = m["application"]
    assert set(chosen["val_mean"]) == {"weights", "correction"} and chosen["setting"] == "auto"
    means = chosen["val_mean"]
    assert chosen["chosen"] == ("correction" if means["correction"] >= means["weights"] else "weights")
    other = "weights" if chosen["chosen"] == "correction" else "correction"
    assert set(chosen["others"]) == {other}
    assert set(chosen["others"][other]["test_accuracy"]) == {"arithmetic", "strings"}
    assert experts.application == chosen["chosen"]
    from agent_forge.pipeline.report_stages import experts_table

    note = experts_table(m)[2]
    assert "chosen on validation" in note and f"as {other}: arithmetic" in note


def test_stage_is_deterministic_and_resumes_after_a_kill_between_experts(entering, tmp_path, monkeypatch):
    whole = _run(entering, tmp_path / "a" / "05-experts").models["model"]
    original = stage_module.ExpertsRun._train_one
    calls = []

    def dies_on_second(self, *args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL after the first expert was written
        return original(self, *args, **kwargs)

    monkeypatch.setattr(stage_module.ExpertsRun, "_train_one", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _run(entering, tmp_path / "b" / "05-experts")
    assert (tmp_path / "b" / ".resume" / "05-experts" / "expert-weights-arithmetic.safetensors").is_file()
    calls.clear()
    monkeypatch.setattr(stage_module.ExpertsRun, "_train_one",
                        lambda self, *a, **k: (calls.append((a[3], a[5])), original(self, *a, **k))[1])
    resumed = _run(entering, tmp_path / "b" / "05-experts")
    # the rest of option (a)'s experts, then option (b)'s; the finished one is not trained again
    assert calls == [("strings", "weights"), ("arithmetic", "correction"), ("strings", "correction")]
    assert resumed.metrics["resumed"]
    for d in ("arithmetic", "strings"):
        a = load_file(str(whole / "experts" / f"expert-{d}.safetensors"))
        b = load_file(str(resumed.models["model"] / "experts" / f"expert-{d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_threshold_choice_falls_back_to_the_base_where_the_expert_is_unsure():
    probs = [0.9, 0.8, 0.4, 0.3]
    routed = [True, True, False, False]
    base = [False, False, True, True]
    t, acc = choose_threshold(probs, routed, base)
    assert 0.4 < t <= 0.8 and acc == 1.0
    assert choose_threshold([0.5, 0.6], [True, True], [False, False]) == (0.0, 1.0)


def test_eval_and_chat_dispatch_with_the_experts_flag(entering, tmp_path):
    from typer.testing import CliRunner

    from agent_forge.cli import app

    model = _run(entering, tmp_path / "05-experts").models["model"]
    runner = CliRunner()
    common = ["--domains", "arithmetic,strings", "--levels", "1", "--n", "3", "--threads", "1", "--device", "cpu"]
    results = {}
    for mode in ("auto", "off", "strings"):
        out = runner.invoke(app, ["eval", str(model), *common, "--experts", mode, "--json", str(tmp_path / f"{mode}.json")])
        assert out.exit_code == 0, out.output
        results[mode] = out.output
    assert "experts:" in results["auto"] and "experts:" not in results["off"]
    bad = runner.invoke(app, ["eval", str(model), *common, "--experts", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output
    chat = runner.invoke(app, ["chat", str(model), "--prompt", "12+3=?", "--max-new-tokens", "3", "--device", "cpu"])
    assert chat.exit_code == 0, chat.output
    assert "[expert:" in chat.output and "confidence" in chat.output


ODD_PROMPTS = ["", "9+" * 3000 + "1=?", "¿qué día es hoy? 日本語 \x00 \ufffd {prompt} }{", "   "]


def test_self_dispatch_routes_by_the_agents_own_answer_and_both_modes_are_measured(entering, tmp_path):
    from agent_forge.models.formats.experts import held

    result = _run(entering, tmp_path / "05-experts", dispatch="self")
    routing = result.metrics["routing"]
    assert routing["mode"] == "self" and set(routing["by_mode"]) == {"self", "router"}
    assert all(0.0 <= v <= 100.0 for v in routing["by_mode"].values())
    assert routing["test_accuracy"] == routing["by_mode"]["self"]
    assert routing["self_classifier"]["val"][0]["step"] == 0  # the untrained start is a candidate
    agent = load_agent(result.models["model"])
    experts = agent.extensions["experts"]
    assert experts.dispatch == "self" and experts.classifier.classes == ["arithmetic", "strings"]
    prompts = ["12+3=?", "reverse(abc)", *ODD_PROMPTS]
    with held(agent.model, experts.decomposition, experts.classifier.z, experts.application):
        probs = experts.classifier.probabilities(agent.model, agent.tokenizer, prompts)
    before = {n: p.clone() for n, p in agent.model.state_dict().items()}
    choices = experts.route(agent, prompts)
    assert [c.predicted for c in choices] == [experts.classifier.classes[int(k)] for k in probs.argmax(-1)]
    assert all(abs(c.confidence - float(p.max())) < 1e-5 for c, p in zip(choices, probs))
    assert all(torch.equal(p, before[n]) for n, p in agent.model.state_dict().items())  # vector removed again
    experts.dispatch = "router"
    assert len(experts.route(agent, ODD_PROMPTS)) == len(ODD_PROMPTS)


def test_a_kept_confidence_policy_dispatches_the_saved_agent_as_the_stage_measured(entering, tmp_path, monkeypatch):
    from agent_forge.models.formats.experts import ConfidencePolicy
    from agent_forge.tasks import task_grid

    off = _run(entering, tmp_path / "off" / "05-experts", confidence_policy=False).metrics["routing"]
    assert not off["confidence_policy"]["enabled"] and not off["confidence_policy"]["kept"] and off["rule"] == "threshold"
    assert load_agent(tmp_path / "off" / "05-experts" / "model").extensions["experts"].policy is None

    # a policy that validation prefers by construction: never the base, never a single expert (the agent's own
    # classification is unsure enough on this tiny model that its rounded probabilities give mixtures)
    chosen = ConfidencePolicy(1.01, 1.01)
    monkeypatch.setattr(stage_module, "choose_policy", lambda *a: (chosen, 2.0))
    result = _run(entering, tmp_path / "on" / "05-experts", dispatch="self")
    m = result.metrics
    policy = m["routing"]["confidence_policy"]
    assert policy["kept"] and m["routing"]["rule"] == "confidence_policy"
    assert (policy["base_above"], policy["single_above"]) == (1.01, 1.01) and policy["test_share"]["base"] == 0.0
    assert policy["test_share"]["mixture"] > 0 and policy["test_mixtures"] >= 1
    assert m["dispatched_accuracy"] == policy["test_accuracy"] and m["summary"]["dispatched"] == policy["test_accuracy"]["mean"]
    agent = load_agent(result.models["model"])
    experts = agent.extensions["experts"]
    assert experts.policy == chosen
    # the saved agent routes the test prompts as the stage counted them
    test = task_grid(SMALL["domains"], SMALL["levels"], "test", SMALL["test_items"], 0)
    choices = experts.route(agent, [t.prompt for t in test])
    n = len(choices)
    shares = {kind: round(100 * sum(c.kind == kind for c in choices) / n, 2) for kind in ("base", "expert", "mixture")}
    assert shares == pytest.approx({"base": policy["test_share"]["base"], "expert": policy["test_share"]["single"],
                                    "mixture": policy["test_share"]["mixture"]}, abs=0.01)
    assert policy["test_mixtures"] == len({c.expert for c in choices if c.kind == "mixture"})
    # eval groups the prompts by route, mixture keys included, and answers each group under its weights
    from typer.testing import CliRunner

    from agent_forge.cli import app

    out = CliRunner().invoke(app, ["eval", str(result.models["model"]), "--domains", "arithmetic,strings", "--levels",
                                   "1", "--n", "3", "--threads", "1", "--device", "cpu", "--experts", "auto"])
    assert out.exit_code == 0, out.output
