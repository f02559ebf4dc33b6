"""Group-baseline policy gradient: advantages, and that a step raises the probability of a rewarded answer."""

import copy

import pytest
import torch

from agent_forge.config.seed import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.models.prompting import encode_pairs
from agent_forge.models.tiny import build_tiny_model, build_tiny_tokenizer
from agent_forge.training.policy_gradient import (
    PolicyGradientTrainer, completion_logprobs, group_advantages,
)


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer("0123456789abcdefghijklmnopqrstuvwxyz+=?: \n")
    model = build_tiny_model(tok, TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=2, num_key_value_heads=2), seed=0)
    return model, tok


def _answer_logprob(model, tok, prompt, answer):
    batch = encode_pairs(tok, [prompt], [answer])
    with torch.no_grad():
        logprobs, mask = completion_logprobs(model, batch)
    return float((logprobs * mask).sum())


def test_group_advantages_subtract_the_group_mean():
    adv = group_advantages([1, 0, 0, 1, 1, 1], [7, 7, 7, 3, 3, 3])
    assert torch.allclose(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]))
    normed = group_advantages([1, 0], [0, 0], normalize_std=True)
    assert normed[0] == pytest.approx(1.0, abs=1e-3) and normed[1] == pytest.approx(-1.0, abs=1e-3)
    with pytest.raises(ForgeError):
        group_advantages([1.0], [0, 1])


def test_step_raises_probability_of_rewarded_answer(tiny):
    torch.manual_seed(0)
    model = copy.deepcopy(tiny[0])
    tok = tiny[1]
    prompts = ["7+5=?", "3+4=?"]
    rewarded = {"7+5=?": "21", "3+4=?": "7"}
    before = {p: _answer_logprob(model, tok, p, a) for p, a in rewarded.items()}
    trainer = PolicyGradientTrainer(model, tok, lr=3e-3, ref_model=copy.deepcopy(model), kl_coef=0.02)
    for _ in range(15):
        ps, cs, rs, gs = [], [], [], []
        for g, p in enumerate(prompts):
            for c in [rewarded[p], "99", "1", "x"]:
                ps.append(p); cs.append(c); rs.append(1.0 if c == rewarded[p] else 0.0); gs.append(g)
        stats = trainer.step(ps, cs, rs, gs)
        assert stats.kl >= 0
    after = {p: _answer_logprob(model, tok, p, a) for p, a in rewarded.items()}
    for p in prompts:
        assert after[p] > before[p] + 1.0, (p, before[p], after[p])
    assert stats.solved_groups == 1.0 and stats.mean_reward == pytest.approx(0.25)


def test_kl_penalty_holds_the_policy_near_the_reference(tiny):
    tok = tiny[1]
    moved = {}
    for kl_coef in (0.0, 5.0):
        torch.manual_seed(0)
        model = copy.deepcopy(tiny[0])
        ref = copy.deepcopy(tiny[0])
        trainer = PolicyGradientTrainer(model, tok, lr=3e-3, ref_model=ref, kl_coef=kl_coef)
        for _ in range(12):
            trainer.step(["1+1=?"] * 4, ["2", "3", "4", "5"], [1, 0, 0, 0], [0] * 4)
        moved[kl_coef] = _answer_logprob(model, tok, "1+1=?", "2") - _answer_logprob(ref, tok, "1+1=?", "2")
    assert moved[0.0] > moved[5.0] > 0


def test_equal_rewards_leave_the_model_unchanged(tiny):
    model = copy.deepcopy(tiny[0])
    before = [p.detach().clone() for p in model.parameters()]
    trainer = PolicyGradientTrainer(model, tiny[1], lr=1e-2, kl_coef=0.0)
    stats = trainer.step(["a=?"] * 3, ["1", "2", "3"], [1, 1, 1], [0, 0, 0])
    assert stats.pg_loss == 0.0
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_demonstrations_teach_an_unsolved_prompt(tiny):
    torch.manual_seed(0)
    model = copy.deepcopy(tiny[0])
    tok = tiny[1]
    before = _answer_logprob(model, tok, "9+9=?", "81")
    trainer = PolicyGradientTrainer(model, tok, lr=3e-3, kl_coef=0.0)
    for _ in range(10):
        # no sample succeeds: the group carries no signal, only the worked solution does
        trainer.step(["9+9=?"] * 2, ["1", "2"], [0, 0], [0, 0], demonstrations=[("9+9=?", "81")])
    assert _answer_logprob(model, tok, "9+9=?", "81") > before + 1.0


def test_mismatched_lengths_raise_forge_error(tiny):
    trainer = PolicyGradientTrainer(copy.deepcopy(tiny[0]), tiny[1], lr=1e-3)
    with pytest.raises(ForgeError):
        trainer.step(["a"], ["b", "c"], [1.0], [0])
    with pytest.raises(ForgeError):
        PolicyGradientTrainer(tiny[0], tiny[1], lr=0)


def test_token_steps_score_the_same_tokens_as_text_steps(tiny):
    from agent_forge.models import prompt_format

    model, tok = tiny
    trainer = PolicyGradientTrainer(copy.deepcopy(model), tok, lr=1e-3)
    fmt = prompt_format(tok)
    prompts, answers = ["12+3=?", "sort 3 1"], ["51", "13"]
    from_ids = trainer._batch_from_ids(fmt.encode_prompts(prompts), fmt.encode_answers(answers))
    from_text = encode_pairs(tok, prompts, answers)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(from_ids[key], from_text[key])


def test_grad_filter_runs_between_backward_and_step(tiny):
    seen = []
    trainer = PolicyGradientTrainer(copy.deepcopy(tiny[0]), tiny[1], lr=1e-3,
                                    grad_filter=lambda m: seen.append(any(p.grad is not None for p in m.parameters())))
    trainer.step(["a=?"] * 2, ["1", "2"], [1, 0], [0, 0])
    assert seen == [True]
