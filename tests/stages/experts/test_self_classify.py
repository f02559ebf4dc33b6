"""Dispatch mode 1: the agent is taught to answer "domain of: <prompt>" with the prompt's domain by one SVF
vector, applied only while it classifies; the vector beats the untrained agent on held-out prompts, selection
never does worse than the start, and the agent's other answers keep the entering weights."""

from __future__ import annotations

import torch

from agent_forge.models.formats.experts import SelfClassifier, cached_decomposition, label_scores, target_names
from agent_forge.models.formats.experts.classify import calibration_bias
from agent_forge.models.formats.ternary import convert_to_bitlinear
from agent_forge.stages.experts.self_classify import routing_accuracy, train_classifier
from agent_forge.tasks import make_tasks

CLASSES = ["arithmetic", "strings"]


def _split(split, n, seed):
    tasks = [t for d in CLASSES for t in make_tasks(d, 1, split, n, seed)]
    return [t.prompt for t in tasks], [CLASSES.index(t.domain) for t in tasks]


def test_the_classification_vector_learns_the_domains_and_leaves_the_weights(tiny_model, tiny_tokenizer):
    model, tok = tiny_model, tiny_tokenizer
    convert_to_bitlinear(model, sub_norm=True)
    for p in model.parameters():
        p.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    decomposition = cached_decomposition(model, target_names(model), None)
    train, train_y = _split("train", 24, 0)
    val, val_y = _split("val", 12, 1)
    test, test_y = _split("test", 12, 2)
    classifier, log = train_classifier(model, tok, decomposition, CLASSES, train, train_y, val, val_y, steps=30,
                                       batch=8, lr=0.2, init=0.1, max_mult=2.0, val_every=5, seed=0)
    start = log.val[0]["accuracy"]
    assert log.best_val >= start  # the initial vector (the entering weights) is a candidate
    # the agent asked without training (only the calibration the training starts from)
    untrained = SelfClassifier(CLASSES, {n: torch.ones(d.rank) for n, d in decomposition.items()},
                               calibration_bias(model, tok, CLASSES))
    assert routing_accuracy(model, tok, decomposition, classifier, test, test_y) > \
        routing_accuracy(model, tok, decomposition, untrained, test, test_y) + 0.2
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # applied only while classifying
    assert len(classifier.z) == len(decomposition) and all(z.shape == (d.rank,) for z, d in
                                                           zip(classifier.z.values(), decomposition.values()))


def test_label_scores_survive_empty_long_and_foreign_prompts(tiny_model, tiny_tokenizer):
    prompts = ["", "7+" * 2000 + "1=?", "¿qué día es hoy? 日本語 \x00 \ufffd", "sort 3 1"]
    with torch.no_grad():
        scores = label_scores(tiny_model, tiny_tokenizer, prompts, CLASSES)
    assert scores.shape == (4, 2) and bool(torch.isfinite(scores).all())
