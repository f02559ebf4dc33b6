"""SVF expert vectors as an agent format: identity at constant z, SVD cache, mixtures, apply/restore, save/load."""

from __future__ import annotations

import copy

import pytest
import torch

from agent_forge.inference import answer
from agent_forge.models import Agent, load_agent, save_agent
from agent_forge.models.formats.experts import (
    ExpertSet,
    Router,
    applied,
    cached_decomposition,
    compose,
    correction,
    decompose,
    decompose_model,
    expert_weights,
    load_decomposition,
    lora_parameter_count,
    mix,
    prompt_features,
    save_decomposition,
    svf_parameter_count,
    target_names,
    weight_digest,
    z_of,
)
from agent_forge.models.formats.ternary import convert_to_bitlinear


def _random_z(decomposition, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: z_of(torch.randn(d.rank, generator=g)) for n, d in decomposition.items()}


def _logits(model, tok, text="12+34=46"):
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_only_mlp_matrices_are_chosen(tiny_model):
    names = target_names(tiny_model)
    assert names and all(".mlp." in n for n in names)
    assert len(names) == 3 * tiny_model.config.num_hidden_layers


def test_constant_z_after_the_rescale_reproduces_w(tiny_model):
    # any constant z (z = 1, or the sigmoid of the initial logit) gives S * z * sum(S)/sum(S z) = S; what is left
    # is float32 rounding of `z * c - 1` (a few ulps times S) and, for the reference's full reconstruction,
    # the SVD's own reconstruction error (float64 SVD kept in float32): both far below 1e-5 of |W|
    w = dict(tiny_model.named_parameters())[target_names(tiny_model)[0]].detach()
    d = decompose(w)
    for value in (1.0, float(z_of(torch.tensor(0.1)))):
        z = torch.full((d.rank,), value)
        torch.testing.assert_close(compose(d, z), w, rtol=0, atol=1e-5 * float(w.abs().max()))
        assert float(correction(d, z).abs().max()) <= 1e-6 * float(w.abs().max())
    # and on a model: the initial expert leaves the logits unchanged
    model = tiny_model
    dec = decompose_model(model, target_names(model))
    ones = {n: torch.ones(d.rank) for n, d in dec.items()}
    tok_ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        before = model(input_ids=tok_ids).logits
        with applied(model, dec, ones):
            during = model(input_ids=tok_ids).logits
    torch.testing.assert_close(during, before, rtol=1e-5, atol=1e-5)


def test_svd_cache_round_trips(tiny_model, tmp_path):
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    digest = weight_digest(tiny_model, names)
    save_decomposition(dec, tmp_path / "svd.safetensors", digest)
    back, stored = load_decomposition(tmp_path / "svd.safetensors", names)
    assert stored == digest
    for n in names:
        for a, b in ((dec[n].U, back[n].U), (dec[n].S, back[n].S), (dec[n].V, back[n].V)):
            assert torch.equal(a, b)
    # a cache of other weights is recomputed, not trusted
    with torch.no_grad():
        dict(tiny_model.named_parameters())[names[0]].mul_(2)
    fresh = cached_decomposition(tiny_model, names, tmp_path / "svd.safetensors")
    assert torch.allclose(fresh[names[0]].S, 2 * dec[names[0]].S, rtol=1e-5)
    _, stored = load_decomposition(tmp_path / "svd.safetensors", names)
    assert stored == weight_digest(tiny_model, names)


def test_a_one_hot_mixture_reproduces_the_expert(tiny_model):
    dec = decompose_model(tiny_model, target_names(tiny_model))
    experts = [_random_z(dec, s) for s in range(3)]
    mixed = mix(experts, [0.0, 1.0, 0.0])
    for n in dec:
        assert torch.equal(mixed[n], experts[1][n])
    weights = expert_weights(tiny_model, dec, mixed)
    reference = expert_weights(tiny_model, dec, experts[1])
    for n in dec:
        assert torch.equal(weights[n], reference[n])


def test_apply_then_restore_is_bit_identical_and_the_expert_changes_the_model(tiny_model):
    dec = decompose_model(tiny_model, target_names(tiny_model))
    z = _random_z(dec, 1)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    logits = _logits_ids(tiny_model)
    with applied(tiny_model, dec, z):
        changed = _logits_ids(tiny_model)
    assert not torch.allclose(changed, logits)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # restored even when the block raises
    with pytest.raises(RuntimeError):
        with applied(tiny_model, dec, z):
            raise RuntimeError("boom")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def _logits_ids(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 5, 7, 9, 3]])).logits


def test_functional_weights_carry_gradients_to_z_on_a_ternary_model(tiny_model):
    convert_to_bitlinear(tiny_model, sub_norm=True)  # option (a): correction on the latent weight, re-quantized
    dec = decompose_model(tiny_model, target_names(tiny_model))
    logits = {n: torch.full((d.rank,), 0.1, requires_grad=True) for n, d in dec.items()}
    weights = expert_weights(tiny_model, dec, {n: z_of(p) for n, p in logits.items()})
    out = torch.func.functional_call(tiny_model, weights, (), {"input_ids": torch.tensor([[1, 5, 7, 9]])})
    out.logits.square().mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in logits.values())


def test_parameter_counts(tiny_model):
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    h, i, layers = 32, 64, tiny_model.config.num_hidden_layers
    assert svf_parameter_count(dec) == 3 * layers * min(h, i)
    assert lora_parameter_count(tiny_model, names, 16) == 3 * layers * 16 * (h + i)


def test_experts_travel_with_the_agent_and_dispatch_restores(tiny_model, tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    experts = {"a": _random_z(dec, 1), "b": _random_z(dec, 2)}
    prompts = ["12+3=?", "abc reversed?", "x", ""]
    feats = prompt_features(tiny_model, tok, prompts)
    router = Router.fit(feats, [0, 1, 0, 1], ["a", "b"])
    agent = Agent(tiny_model, tok, extensions={"experts": ExpertSet(names, dec, experts, 1.0, router, 0.3)})
    save_agent(agent, tmp_path / "agent")
    back = load_agent(tmp_path / "agent")
    found = back.extensions["experts"]
    assert sorted(found.experts) == ["a", "b"] and found.threshold == 0.3
    for n in names:
        assert torch.equal(found.experts["a"][n], experts["a"][n])
        assert torch.equal(found.decomposition[n].S, dec[n].S)
    torch.testing.assert_close(found.router.probabilities(feats), router.probabilities(feats))
    state = {k: v.clone() for k, v in back.model.state_dict().items()}
    # dispatch never crashes on an empty, very long or unknown-format prompt, and always restores the weights
    for mode in ("auto", "a", "off"):
        found.mode = mode
        replies = answer(back, ["", "9" * 400, "\x00??\u00e9", "12+3=?"], max_new_tokens=3)
        assert len(replies) == 4
        for k, v in back.model.state_dict().items():
            assert torch.equal(v, state[k]), k
    found.mode = "a"
    with found.context(back, ["1+1"]) as choices:
        assert choices[0].expert == "a"
        assert not torch.equal(dict(back.model.named_parameters())[names[0]], state[names[0]])
    assert torch.equal(dict(back.model.named_parameters())[names[0]], state[names[0]])


def test_an_agent_that_holds_its_experts_as_corrections_keeps_its_weights_and_says_so(tiny_model, tiny_tokenizer,
                                                                                      tmp_path):
    """`application: correction` travels in experts.json; answering under an expert then adds the correction
    beside the layers (the weights never change) and gives the hook's logits; a corrupted value is one error."""
    import json

    from agent_forge.errors import ForgeError
    from agent_forge.models.formats.experts import corrected

    tok = copy.deepcopy(tiny_tokenizer)
    convert_to_bitlinear(tiny_model, sub_norm=True)
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    experts = {"a": _random_z(dec, 1)}
    save_agent(Agent(tiny_model, tok, extensions={"experts": ExpertSet(names, dec, experts, application="correction")}),
               tmp_path / "agent")
    back = load_agent(tmp_path / "agent")
    found = back.extensions["experts"]
    assert found.application == "correction"
    state = {k: v.clone() for k, v in back.model.state_dict().items()}
    with corrected(back.model, found.decomposition, experts["a"]):
        expected = _logits(back.model, tok)
    with found.using(back.model, "a"):
        got = _logits(back.model, tok)
        for k, v in back.model.state_dict().items():
            assert torch.equal(v, state[k]), k
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert float((got - _logits(back.model, tok)).abs().max()) > 1e-3  # and it was held only inside `using`
    index = tmp_path / "agent" / "experts" / "experts.json"
    index.write_text(json.dumps(json.loads(index.read_text()) | {"application": "sideways"}))
    with pytest.raises(ForgeError, match="unknown expert application 'sideways'"):
        load_agent(tmp_path / "agent")


def test_evaluation_scores_each_task_under_the_expert_dispatch_picks(tiny_model, tiny_tokenizer):
    """evaluate_agent (used by eval and the trajectory) groups tasks by their routed expert."""
    from agent_forge.evaluation import evaluate, evaluate_agent
    from agent_forge.evaluation.report import dispatch_groups
    from agent_forge.tasks import task_grid

    tok = copy.deepcopy(tiny_tokenizer)
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    experts = {"a": _random_z(dec, 1), "b": _random_z(dec, 2)}
    tasks = task_grid(["arithmetic", "strings"], [1], "test", 4, 0)
    labels = [0 if t.domain == "arithmetic" else 1 for t in tasks]
    router = Router.fit(prompt_features(tiny_model, tok, [t.prompt for t in tasks]), labels, ["a", "b"])
    found = ExpertSet(names, dec, experts, 1.0, router, 0.0)
    agent = Agent(tiny_model, tok, extensions={"experts": found})
    dispatcher, groups = dispatch_groups(agent, [t.prompt for t in tasks])
    assert dispatcher is found and set(groups) <= {"a", "b"}
    report = evaluate_agent(agent, tasks)
    for expert, indices in groups.items():
        with found.using(tiny_model, expert):
            expected = evaluate(tiny_model, tok, [tasks[i] for i in indices])
        assert [report.items[i] for i in indices] == expected.items
        assert [report.loglik[k] for k in range(len(tasks)) if k in indices] == pytest.approx(expected.loglik)
    found.mode = "off"
    assert evaluate_agent(agent, tasks).loglik == pytest.approx(evaluate(tiny_model, tok, tasks).loglik)
    assert found.mode == "off"
