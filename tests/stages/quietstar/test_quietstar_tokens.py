"""Thought delimiters: added from '---', trained with a gradient weight, masked, written back for saving."""

from __future__ import annotations

import pytest
import torch
from quietstar_helpers import ALPHABET, TINY

from agent_forge.errors import ForgeError
from agent_forge.models import build_tiny_model, build_tiny_tokenizer
from agent_forge.models.formats.thoughts.tokens import (
    END_OF_THOUGHT,
    START_OF_THOUGHT,
    add_thought_tokens,
    mask_thought_logits,
    thought_tokens_of,
)
from agent_forge.stages.quietstar.embedding import ThoughtEmbedding


def test_delimiters_start_from_the_em_dash_embedding():
    tokenizer = build_tiny_tokenizer(ALPHABET)
    model = build_tiny_model(tokenizer, TINY)
    vocab_before = len(tokenizer)
    dash = tokenizer.encode("-", add_special_tokens=False)[0]
    tokens, how = add_thought_tokens(model, tokenizer)
    assert len(tokenizer) == vocab_before + 2
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokens == thought_tokens_of(tokenizer)
    weight = model.get_input_embeddings().weight
    # "---" is three '-' characters here; their mean is the '-' row (up to float rounding)
    torch.testing.assert_close(weight[tokens.start_id], weight[dash])
    torch.testing.assert_close(weight[tokens.end_id], weight[dash])
    assert "'---'" in how
    # each delimiter is one token, never split into characters
    assert tokenizer.encode(START_OF_THOUGHT + "1" + END_OF_THOUGHT, add_special_tokens=False) == [
        tokens.start_id, tokenizer.encode("1", add_special_tokens=False)[0], tokens.end_id
    ]


def test_missing_init_text_falls_back_to_the_mean_embedding():
    tokenizer = build_tiny_tokenizer("0123456789")  # no '-' in the vocabulary
    model = build_tiny_model(tokenizer, TINY)
    mean = model.get_input_embeddings().weight.detach().mean(0)
    tokens, how = add_thought_tokens(model, tokenizer)
    torch.testing.assert_close(model.get_input_embeddings().weight[tokens.start_id], mean)
    assert "mean" in how


def test_adding_twice_keeps_trained_rows(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    with torch.no_grad():
        model.get_input_embeddings().weight[tokens.start_id] += 1.0
    trained = model.get_input_embeddings().weight[tokens.start_id].clone()
    again, how = add_thought_tokens(model, tokenizer)
    assert again == tokens and "kept" in how
    assert torch.equal(model.get_input_embeddings().weight[tokens.start_id], trained)


def test_lookup_of_a_plain_tokenizer_is_a_forge_error():
    with pytest.raises(ForgeError, match="no thought token"):
        thought_tokens_of(build_tiny_tokenizer(ALPHABET))


def test_thought_embedding_scales_gradients_and_writes_back(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids = torch.tensor([[1, tokens.start_id, 5, tokens.end_id, 7]])
    weighted = ThoughtEmbedding(model, tokens, grad_weight=100.0)
    # same vectors as the plain embedding layer before training
    torch.testing.assert_close(weighted(ids), model.get_input_embeddings()(ids))
    # the parameter is not the model's: its parameters() holds only the two scaled rows
    assert [p.shape for p in weighted.parameters()] == [torch.Size([2, model.config.hidden_size])]

    probe = torch.randn(1, 5, model.config.hidden_size)
    (weighted(ids) * probe).sum().backward()
    plain_rows = torch.stack([probe[0, 1], probe[0, 3]])  # d(loss)/d(embedding row) for each delimiter
    torch.testing.assert_close(weighted.scaled.grad, 100.0 * plain_rows)
    # the model's own rows for the delimiters get no gradient through this path
    assert model.get_input_embeddings().weight.grad[list(tokens.ids)].abs().sum() == 0

    with torch.no_grad():
        weighted.scaled += 0.01
    weighted.write_back()
    torch.testing.assert_close(model.get_input_embeddings().weight[list(tokens.ids)], weighted.vectors)


def test_masking_removes_only_the_delimiters(tiny_thinker):
    _, _, tokens = tiny_thinker
    logits = torch.zeros(2, 60)
    logits[:, tokens.start_id] = 50.0
    masked = mask_thought_logits(logits, tokens)
    assert torch.isinf(masked[:, list(tokens.ids)]).all()
    assert masked.argmax(-1).tolist() == [0, 0]
    assert logits[0, tokens.start_id] == 50.0  # the input is not modified


def test_tied_output_rows_train_with_the_input_rows_and_match_after_write_back(tiny_thinker):
    """With tied embeddings a delimiter's input row is its output row: training must score with it too."""
    model, tokenizer, tokens = tiny_thinker
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    weighted = ThoughtEmbedding(model, tokens)
    hidden = torch.randn(3, model.config.hidden_size)
    torch.testing.assert_close(weighted.output_head()(hidden), model.get_output_embeddings()(hidden))

    with torch.no_grad():
        weighted.scaled.mul_(3.0)
    logits = weighted.output_head()(hidden)
    torch.testing.assert_close(logits[:, list(tokens.ids)], hidden @ weighted.vectors.T)
    logits[:, tokens.start_id].sum().backward()
    assert weighted.scaled.grad[0].abs().sum() > 0  # the output role trains the same parameter

    ids = torch.tensor([[1, tokens.start_id, 7, tokens.end_id]])
    with torch.no_grad():
        trained = weighted.output_head()(model.model(inputs_embeds=weighted(ids)).last_hidden_state)
        weighted.write_back()
        plain = model(input_ids=ids).logits
    torch.testing.assert_close(plain, trained)
