"""Composable specialist fine-tunes: LoRA folded back into plain weights, and the KL anchor to the base."""

import copy

import torch

from agent_forge.models import build_tiny_model, build_tiny_tokenizer, encode_pairs
from agent_forge.config import TinyModelConfig
from agent_forge.stages.seed.composable import anchored_batches, anchored_loss, fold_lora, with_lora
from agent_forge.tasks import alphabet, make_tasks
from agent_forge.training.distill import kl_to_teacher
from agent_forge.training.supervised import answer_cross_entropy, train_supervised

SHAPE = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2)


def _tiny(seed=0):
    tok = build_tiny_tokenizer(alphabet())
    return build_tiny_model(tok, SHAPE, seed=seed), tok


def _pairs(domain, level, n, split="train"):
    return [(t.prompt, t.answer) for t in make_tasks(domain, level, split, n, 0)]


def test_lora_folds_into_a_plain_model_with_a_low_rank_update():
    base, tok = _tiny()
    wrapped, params = with_lora(copy.deepcopy(base), rank=2, alpha=4.0)
    assert params and all("lora_" in n for n, p in wrapped.named_parameters() if p.requires_grad)
    train_supervised(wrapped, tok, lambda step: _pairs("arithmetic", 1, 8), steps=3, lr=1e-2, params=params,
                     progress=False)
    folded = fold_lora(wrapped)
    assert type(folded) is type(base)
    before, after = base.state_dict(), folded.state_dict()
    assert set(before) == set(after)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(k.endswith("proj.weight") for k in moved)
    for k in moved:
        assert torch.linalg.matrix_rank(after[k] - before[k], atol=1e-6) <= 2


def test_anchored_loss_is_plain_cross_entropy_when_the_model_equals_its_reference():
    model, tok = _tiny()
    pairs = _pairs("arithmetic", 1, 4) + _pairs("logic", 1, 3)
    batch = encode_pairs(tok, [p for p, _ in pairs], [a for _, a in pairs])
    own = {k: v[:4] for k, v in batch.items() if torch.is_tensor(v)}
    loss = anchored_loss(copy.deepcopy(model), n_anchor=3, weight=5.0)(model, batch)
    assert torch.allclose(loss, answer_cross_entropy(model, own), atol=1e-6)
    other, _ = _tiny(seed=1)
    assert anchored_loss(other, n_anchor=3, weight=5.0)(model, batch) > loss + 1e-3


def test_anchor_keeps_other_domains_closer_to_the_base():
    base, tok = _tiny()
    anchor_eval = _pairs("logic", 2, 16, "val")
    eval_batch = encode_pairs(tok, [p for p, _ in anchor_eval], [a for _, a in anchor_eval])

    def drift(weight):
        torch.manual_seed(0)
        model = copy.deepcopy(base)
        own = lambda step: _pairs("arithmetic", 2, 12)
        batches = anchored_batches(own, "arithmetic", [1, 2], 12, seed=3, world_seed=0)
        train_supervised(model, tok, batches, steps=12, lr=3e-3, loss_fn=anchored_loss(base, 12, weight),
                         progress=False)
        with torch.no_grad():
            logits = model(input_ids=eval_batch["input_ids"], attention_mask=eval_batch["attention_mask"]).logits[:, :-1]
            ref = base(input_ids=eval_batch["input_ids"], attention_mask=eval_batch["attention_mask"]).logits[:, :-1]
        return float(kl_to_teacher(logits, ref, eval_batch["labels"][:, 1:] != -100))

    assert drift(10.0) < 0.5 * drift(0.0)


def test_anchored_batches_append_other_domains_only():
    batches = anchored_batches(lambda step: [("own", "1")] * 3, "arithmetic", [1, 2], 5, seed=0, world_seed=0)
    pairs = batches(0)
    assert pairs[:3] == [("own", "1")] * 3 and len(pairs) == 8
    assert not any("digits reversed" in p for p, _ in pairs[3:])
