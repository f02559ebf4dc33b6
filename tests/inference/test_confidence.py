"""The self-model's confidence in the shared inference layer: the curriculum and the experts' dispatch read the
same function, it is a probability from the model's yes/no likelihoods, and batching does not change it."""

from __future__ import annotations

import math

import torch

from agent_forge.inference import confidence
from agent_forge.inference.confidence import NO, YES, confidence_prompt, predict_confidence
from agent_forge.models import encode_pairs, token_logprobs
from agent_forge.stages.curriculum import self_model

PROMPTS = ["12+3=?", "sort 3 1", "", "min 4 2"]


def test_the_curriculum_uses_the_shared_function():
    assert self_model.predict_confidence is predict_confidence
    assert confidence.self_confidence is predict_confidence


def _answer_logprob(model, tok, prompt, answer):
    batch = encode_pairs(tok, [prompt], [answer])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    return float((token_logprobs(logits[:, :-1], targets) * mask).sum())


def test_confidence_is_p_yes_over_p_yes_plus_no_and_batch_independent(tiny_model, tiny_tokenizer):
    tiny_model.eval()
    together = predict_confidence(tiny_model, tiny_tokenizer, PROMPTS)
    one_by_one = [predict_confidence(tiny_model, tiny_tokenizer, PROMPTS, batch_size=1)[k] for k in range(len(PROMPTS))]
    assert len(together) == len(PROMPTS) and all(0.0 < c < 1.0 for c in together)
    for a, b in zip(together, one_by_one):
        assert math.isclose(a, b, abs_tol=1e-5)
    # computed independently, one prompt at a time, from the two answers' log-likelihoods
    for prompt, c in zip(PROMPTS, together):
        yes = _answer_logprob(tiny_model, tiny_tokenizer, confidence_prompt(prompt), YES)
        no = _answer_logprob(tiny_model, tiny_tokenizer, confidence_prompt(prompt), NO)
        assert math.isclose(c, 1.0 / (1.0 + math.exp(no - yes)), abs_tol=1e-5)
