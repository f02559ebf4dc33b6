"""The confidence policy of the experts' dispatch: threshold choice, mixture keys, save/load, routing under it."""

from __future__ import annotations

import copy
import itertools
import json
import random

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.inference import answer
from agent_forge.inference.confidence import predict_confidence
from agent_forge.models import Agent, load_agent, save_agent
from agent_forge.models.formats.experts import (
    Choice,
    ConfidencePolicy,
    ExpertSet,
    Router,
    SelfClassifier,
    applied,
    choose_policy,
    decompose_model,
    expert_weights,
    mixture_key,
    prompt_features,
    target_names,
    vector,
    z_of,
)

PROMPTS = ["12+3=?", "abc reversed?", "x", "", "7*8=?", "upper(qz)", "9" * 300, "\x00??\u00e9"]


def _random_z(decomposition, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: z_of(torch.randn(d.rank, generator=g)) for n, d in decomposition.items()}


def _expert_set(model, tok, **kwargs):
    names = target_names(model)
    dec = decompose_model(model, names)
    experts = {"a": _random_z(dec, 1), "b": _random_z(dec, 2)}
    router = Router.fit(prompt_features(model, tok, PROMPTS), [0, 1] * (len(PROMPTS) // 2), ["a", "b"])
    return ExpertSet(names, dec, experts, 1.0, router, 0.3, **kwargs)


# --- choose_policy -------------------------------------------------------------------------------

def _brute_force(confidence, top, base, single, mixture):
    """Every candidate pair by plain loops: (best accuracy, the pair the documented tie-breaks pick)."""
    bases = sorted({0.0, 1.01, *[round(c, 2) for c in confidence]}, reverse=True)  # highest base threshold first
    singles = sorted({0.0, 1.01, *[round(p, 2) for p in top]})  # then the lowest single threshold
    best, pick = -1.0, None
    for tb, ts in itertools.product(bases, singles):
        right = [b if c >= tb else (s if p >= ts else m)
                 for c, p, b, s, m in zip(confidence, top, base, single, mixture)]
        acc = sum(right) / len(right)
        if acc > best:
            best, pick = acc, (tb, ts)
    return best, pick


def test_choose_policy_picks_the_thresholds_that_answer_most_prompts_right():
    # prompts 0-1: only the base is right (confident); prompt 2: only its top expert (sure class); 3-4: only the
    # mixture (unsure class)
    confidence = [0.9, 0.8, 0.3, 0.2, 0.1]
    top = [0.9, 0.5, 0.95, 0.6, 0.4]
    base = [True, True, False, False, False]
    single = [False, False, True, False, False]
    mixture = [False, False, False, True, True]
    policy, acc = choose_policy(confidence, top, base, single, mixture)
    assert acc == 1.0
    # base_above: 0.8 is the only value keeping prompts 0-1 on the base and prompt 2 off it; single_above: 0.9
    # and 0.95 both send prompt 2 to its expert and 3-4 to the mixture, the tie goes to the lower
    assert (policy.base_above, policy.single_above) == (0.8, 0.9)


def test_choose_policy_tie_breaks_and_extremes():
    # everything right everywhere: the highest base threshold (never the base) and the lowest single one
    # (always one expert)
    policy, acc = choose_policy([0.2, 0.7], [0.5, 0.9], [True, True], [True, True], [True, True])
    assert (policy.base_above, policy.single_above, acc) == (1.01, 0.0, 1.0)
    # only the base is right: every prompt to the base, by the highest threshold that still sends all there
    policy, acc = choose_policy([0.2, 0.7], [0.5, 0.9], [True, True], [False, False], [False, False])
    assert (policy.base_above, policy.single_above, acc) == (0.2, 0.0, 1.0)
    # only the mixtures are right: never the base, never a single expert (a threshold above every top p)
    policy, acc = choose_policy([0.2, 0.7], [0.5, 0.9], [False, False], [False, False], [True, True])
    assert (policy.base_above, policy.single_above, acc) == (1.01, 1.01, 1.0)
    # a confidence just below its own rounded candidate (0.196 -> 0.2) still reaches the base (threshold 0)
    policy, acc = choose_policy([0.196], [0.9], [True], [False], [False])
    assert policy.base_above <= 0.196 and acc == 1.0
    assert choose_policy([], [], [], [], []) == (ConfidencePolicy(1.01, 0.0), 0.0)


def test_choose_policy_matches_a_brute_force_search():
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 12)
        confidence = [rng.choice([rng.random(), round(rng.random(), 1)]) for _ in range(n)]
        top = [rng.uniform(0.3, 1.0) for _ in range(n)]
        rights = [[rng.random() < 0.5 for _ in range(n)] for _ in range(3)]
        policy, acc = choose_policy(confidence, top, *rights)
        best, pick = _brute_force(confidence, top, *rights)
        assert acc == pytest.approx(best)
        assert (policy.base_above, policy.single_above) == pytest.approx(pick)


# --- mixture keys and vectors --------------------------------------------------------------------

def test_decide_and_mixture_keys():
    experts = {"a": {}, "b": {}, "c": {}}
    classes = ["a", "b", "c"]
    p = torch.tensor([0.5, 0.3, 0.2])
    assert mixture_key(classes, p, experts) == "mix:a=0.50,b=0.30,c=0.20"
    assert mixture_key(classes, torch.tensor([0.001, 0.996, 0.003]), experts) == "b"  # zeros dropped: one left
    assert mixture_key(["a", "x"], torch.tensor([0.6, 0.4]), {"a": {}}) == "a"  # classes without an expert dropped
    assert mixture_key(["x"], torch.tensor([1.0]), experts) is None
    assert ConfidencePolicy(0.5, 0.4).decide(classes, p, 0.5, experts) is None  # confident: the base
    assert ConfidencePolicy(0.6, 0.4).decide(classes, p, 0.5, experts) == "a"  # sure class: its expert
    assert ConfidencePolicy(0.6, 0.6).decide(classes, p, 0.5, experts) == "mix:a=0.50,b=0.30,c=0.20"
    assert [Choice(k, 1.0).kind for k in (None, "a", "mix:a=0.50,b=0.50")] == ["base", "expert", "mixture"]


def test_a_one_hot_mixture_key_reproduces_the_single_expert_exactly(tiny_model, tiny_tokenizer):
    found = _expert_set(tiny_model, copy.deepcopy(tiny_tokenizer))
    for key in ("mix:a=1.00,b=0.00", "mix:a=1.00"):
        z = vector(key, found.experts)
        assert all(torch.equal(z[n], found.experts["a"][n]) for n in found.names)
        reference = expert_weights(tiny_model, found.decomposition, found.experts["a"])
        weights = expert_weights(tiny_model, found.decomposition, z)
        assert all(torch.equal(weights[n], reference[n]) for n in found.names)
    params = dict(tiny_model.named_parameters())
    with found.using(tiny_model, "a"):
        single = {n: params[n].detach().clone() for n in found.names}
    with found.using(tiny_model, "mix:a=1.00,b=0.00"):
        assert all(torch.equal(params[n], single[n]) for n in found.names)
    # a real mixture is neither expert, and its scale does not matter (the rescale keeps sum(S))
    half = vector("mix:a=0.50,b=0.50", found.experts)
    assert not torch.equal(half[found.names[0]], found.experts["a"][found.names[0]])


@pytest.mark.parametrize("key", ["nope", "mix:", "mix:a", "mix:a=x", "mix:c=0.50", "mix:a=1.50", "mix:a=-0.10",
                                 "mix:a=0.00,b=0.00", "mix:a=nan", "mix:a=0.5;b=0.5", "a,b"])
def test_vector_rejects_bad_keys(tiny_model, tiny_tokenizer, key):
    found = _expert_set(tiny_model, copy.deepcopy(tiny_tokenizer))
    with pytest.raises(ForgeError):
        vector(key, found.experts)
    before = {n: p.clone() for n, p in tiny_model.state_dict().items()}
    with pytest.raises(ForgeError):
        with found.using(tiny_model, key):
            pass
    found.mode = key
    with pytest.raises(ForgeError):
        found.route(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), ["1+1"])
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.state_dict().items())


# --- files ---------------------------------------------------------------------------------------

def test_a_policy_round_trips_through_write_and_read(tiny_model, tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    found = _expert_set(tiny_model, tok, policy=ConfidencePolicy(0.73, 0.41))
    save_agent(Agent(tiny_model, tok, extensions={"experts": found}), tmp_path / "agent")
    back = load_agent(tmp_path / "agent").extensions["experts"]
    assert back.policy == ConfidencePolicy(0.73, 0.41) and back.threshold == 0.3
    # without a policy nothing is stored; an older folder (no key at all) reads as no policy
    found.policy = None
    save_agent(Agent(tiny_model, tok, extensions={"experts": found}), tmp_path / "plain")
    index_path = tmp_path / "plain" / "experts" / "experts.json"
    index = json.loads(index_path.read_text())
    assert index["policy"] is None
    del index["policy"]
    index_path.write_text(json.dumps(index))
    assert load_agent(tmp_path / "plain").extensions["experts"].policy is None
    index["policy"] = {"base_above": "high"}
    index_path.write_text(json.dumps(index))
    with pytest.raises(ForgeError, match="policy"):
        load_agent(tmp_path / "plain")


# --- routing under a policy ----------------------------------------------------------------------

def test_route_under_a_policy(tiny_model, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    found = _expert_set(tiny_model, tok)
    agent = Agent(tiny_model, tok, extensions={"experts": found})
    classes, probs = found.probabilities(agent, PROMPTS)
    confidence = predict_confidence(tiny_model, tok, PROMPTS)
    before = {n: p.clone() for n, p in tiny_model.state_dict().items()}

    found.policy = ConfidencePolicy(0.0, 0.5)  # every confidence is >= 0: the base answers everything
    choices = found.route(agent, PROMPTS)
    assert all(c.expert is None and c.kind == "base" for c in choices)
    assert [c.self_confidence for c in choices] == pytest.approx(confidence, abs=1e-6)
    assert [c.predicted for c in choices] == [classes[int(k)] for k in probs.argmax(-1)]

    found.policy = ConfidencePolicy(1.01, 0.0)  # never the base, always the top class's expert
    choices = found.route(agent, PROMPTS)
    assert [c.expert for c in choices] == [classes[int(k)] for k in probs.argmax(-1)]
    assert all(c.kind == "expert" for c in choices)

    found.policy = ConfidencePolicy(1.01, 1.01)  # never the base, never one expert: the probability mixture
    choices = found.route(agent, PROMPTS)
    assert [c.expert for c in choices] == [mixture_key(classes, row, found.experts) for row in probs]
    assert any(c.kind == "mixture" for c in choices)
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.state_dict().items())

    # a mixture key is a mode like an expert's name; answering under it restores the weights
    key = next(c.expert for c in choices if c.kind == "mixture")
    found.mode = key
    assert [c.expert for c in found.route(agent, ["1+1", "q"])] == [key, key]
    expected = {n: w.detach() for n, w in
                expert_weights(tiny_model, found.decomposition, vector(key, found.experts)).items()}
    params = dict(tiny_model.named_parameters())
    with found.context(agent, ["1+1"]) as held:
        assert held[0].kind == "mixture"
        for n in found.names:
            torch.testing.assert_close(params[n].detach(), expected[n], rtol=0, atol=1e-6)
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.state_dict().items())
    # answer() under a policy (a mixed batch: the base weights) never crashes and restores the weights
    found.mode = "auto"
    for policy in (ConfidencePolicy(1.01, 1.01), ConfidencePolicy(0.5, 0.6)):
        found.policy = policy
        assert len(answer(agent, PROMPTS, max_new_tokens=3)) == len(PROMPTS)
        assert all(torch.equal(p, before[n]) for n, p in tiny_model.state_dict().items())


def test_self_dispatch_under_a_policy_reads_confidence_on_the_base_weights(tiny_model, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    found = _expert_set(tiny_model, tok)
    found.classifier = SelfClassifier(["a", "b"], _random_z(found.decomposition, 3), torch.zeros(2))
    found.dispatch = "self"
    found.policy = ConfidencePolicy(1.01, 0.0)
    agent = Agent(tiny_model, tok, extensions={"experts": found})
    with applied(tiny_model, found.decomposition, found.classifier.z):
        probs = found.classifier.probabilities(tiny_model, tok, PROMPTS)
    choices = found.route(agent, PROMPTS)
    assert [c.expert for c in choices] == [["a", "b"][int(k)] for k in probs.argmax(-1)]
    assert [c.self_confidence for c in choices] == pytest.approx(predict_confidence(tiny_model, tok, PROMPTS), abs=1e-6)
