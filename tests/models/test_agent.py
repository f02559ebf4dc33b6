"""load_agent / save_agent: every extension restored by one call, written by one call, refused when inconsistent."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.models import Agent, load_agent, save_agent, save_model, with_thoughts
from agent_forge.models.formats.ternary import BitLinear, PackedBitLinear, convert_to_bitlinear, is_ternary
from agent_forge.models.formats.thoughts import (
    END_OF_THOUGHT,
    START_OF_THOUGHT,
    HeadInfo,
    MixingHead,
    add_thought_tokens,
)


@pytest.fixture
def tiny(tiny_model, tiny_tokenizer):
    return tiny_model, copy.deepcopy(tiny_tokenizer)


def _logits(model, tokenizer, text="12+34=46"):
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_plain_folder_loads_as_an_agent_without_extensions(tiny, tmp_path):
    model, tok = tiny
    save_model(model, tok, tmp_path / "plain")
    agent = load_agent(tmp_path / "plain")
    assert agent.extensions == {} and not agent.thinks and not agent.ternary and not agent.packed
    torch.testing.assert_close(_logits(agent.model, agent.tokenizer), _logits(model, tok))


def test_a_ternary_checkpoint_comes_back_ternary_without_any_other_call(tiny, tmp_path):
    model, tok = tiny
    convert_to_bitlinear(model, sub_norm=True)
    expected = _logits(model, tok)
    save_agent(Agent(model, tok), tmp_path / "ternary")

    agent = load_agent(tmp_path / "ternary")
    assert agent.ternary and is_ternary(agent.model)
    assert any(isinstance(m, BitLinear) for m in agent.model.modules())
    torch.testing.assert_close(_logits(agent.model, agent.tokenizer), expected)
    # plain transformers still reads the folder (as a full-precision model of the latent weights)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ternary")
    assert not any(isinstance(m, BitLinear) for m in plain.modules())


def test_packed_export_loads_through_the_kernel_and_matches_the_latent_model(tiny, tmp_path):
    model, tok = tiny
    convert_to_bitlinear(model)
    save_agent(Agent(model, tok), tmp_path / "packed", packed=True)
    agent = load_agent(tmp_path / "packed")
    assert agent.packed and agent.ternary
    assert any(isinstance(m, PackedBitLinear) for m in agent.model.modules())
    torch.testing.assert_close(_logits(agent.model, agent.tokenizer), _logits(model, tok), atol=1e-3, rtol=1e-3)
    with pytest.raises(ForgeError, match="CPU in float32"):
        load_agent(tmp_path / "packed", dtype="bfloat16")
    with pytest.raises(ForgeError, match="inference-only"):
        save_agent(agent, tmp_path / "again")


def test_saving_a_partly_full_precision_ternary_model_is_refused(tiny, tmp_path):
    model, tok = tiny
    convert_to_bitlinear(model)
    # a stage adds a plain linear layer and forgets keep_ternary
    layer = model.model.layers[0].mlp
    layer.down_proj = torch.nn.Linear(layer.down_proj.in_features, layer.down_proj.out_features, bias=False)
    with pytest.raises(ForgeError, match="keep_ternary"):
        save_agent(Agent(model, tok), tmp_path / "broken")
    assert not (tmp_path / "broken").exists()


def test_thoughts_and_ternary_travel_together_through_load_and_save(tiny, tmp_path):
    model, tok = tiny
    tokens, _ = add_thought_tokens(model, tok)
    convert_to_bitlinear(model)
    head = MixingHead(model.config.hidden_size)
    with torch.no_grad():
        head.output.weight.normal_()
    save_agent(with_thoughts(Agent(model, tok), head, tokens, HeadInfo(3, START_OF_THOUGHT, END_OF_THOUGHT)), tmp_path / "a")

    loaded = load_agent(tmp_path / "a")
    assert loaded.thinks and loaded.ternary and loaded.thoughts.thought_length == 3
    assert loaded.describe()["extensions"] == ["thoughts"]
    save_agent(loaded, tmp_path / "b")  # what every later stage does
    again = load_agent(tmp_path / "b")
    assert again.ternary and again.thinks
    for a, b in zip(head.state_dict().values(), again.thoughts.head.state_dict().values()):
        assert torch.equal(a, b)
    # the delimiters stay out of ordinary generation
    assert again.model.generation_config.suppress_tokens == list(tokens.ids)


def test_missing_source_is_one_forge_error(tmp_path):
    with pytest.raises(ForgeError):
        load_agent(tmp_path / "nowhere")
