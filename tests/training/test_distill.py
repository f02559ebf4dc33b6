"""KL distillation: the loss against hand-computed values, its masks, and the loop pulling a student to a teacher."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.models import build_tiny_tokenizer, encode_pairs
from agent_forge.training.distill import distill_loss, kl_to_teacher, prediction_mask, train_distill


def test_kl_by_hand():
    teacher = torch.log(torch.tensor([[[0.5, 0.5]]]))
    student = torch.log(torch.tensor([[[0.25, 0.75]]]))
    # KL(p || q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_to_teacher(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_teacher(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_temperature_softens_and_rescales():
    teacher = torch.tensor([[[2.0, 0.0, -1.0]]])
    student = torch.tensor([[[0.0, 1.0, 0.0]]])
    t = 2.0
    p = torch.softmax(teacher / t, -1)
    q = torch.softmax(student / t, -1)
    expected = (t**2) * (p * (p.log() - q.log())).sum()
    assert kl_to_teacher(student, teacher, temperature=t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_mask_averages_only_selected_positions():
    teacher = torch.zeros(1, 2, 3)
    student = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])
    only_first = kl_to_teacher(student, teacher, torch.tensor([[True, False]]))
    only_second = kl_to_teacher(student, teacher, torch.tensor([[False, True]]))
    assert only_first.item() == pytest.approx(0.0, abs=1e-7)
    assert only_second.item() > 0.5


def test_prediction_masks_shift_by_one():
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0]]), "labels": torch.tensor([[-100, -100, 7, -100]])}
    assert prediction_mask(batch, "all").tolist() == [[True, True, False]]
    assert prediction_mask(batch, "answer").tolist() == [[False, True, False]]
    with pytest.raises(ValueError):
        prediction_mask(batch, "prompt")


def _model(tok, seed):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(config)


def test_distillation_pulls_the_student_towards_the_teacher():
    tok = build_tiny_tokenizer(["abcdefgh 0123456789+="])
    teacher, student = _model(tok, 0).eval(), _model(tok, 1)
    pairs = [("ab+cd=", "7"), ("ef+gh=", "12"), ("a+b=", "3"), ("hh+g=", "9")]
    batch = encode_pairs(tok, [p for p, _ in pairs], [a for _, a in pairs])
    loss_fn = distill_loss(teacher, kl_weight=1.0)
    before = loss_fn(student, batch).item()
    seen = []
    log = train_distill(student, teacher, tok, lambda step: pairs, steps=40, lr=3e-3, on_step=seen.append,
                        progress=False)
    after = loss_fn(student, batch).item()
    assert seen == list(range(40))
    assert after < 0.5 * before
    assert len(log.losses) == 40
    assert all(not p.requires_grad for p in teacher.parameters())


def test_weights_are_validated():
    with pytest.raises(ValueError):
        distill_loss(torch.nn.Linear(1, 1), kl_weight=0.0, task_weight=0.0)
