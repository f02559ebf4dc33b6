"""Tool execution in the generation loop with a real tiny model, and the `tools.json` agent extension.

The slow test fine-tunes a tiny Llama (hidden 64, 2 layers; ~75 s on one thread) for 800 steps to answer
`calc 12*34` with a calculator call and, after the runtime appended the tool response, with the number from it;
saved with `save_agent` and restored by `load_agent`, the agent executes the call without any hook passed in.
"""

import json
import random

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.inference import answer
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, encode_pairs, load_agent, prompt_format, save_agent
from agent_forge.tools import ToolUse, builtin_registry, default_registry, final_answer, render_call, render_response


def _example(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    product = str(a * b)
    return f"calc {a}*{b}", render_call("calculator", {"expression": f"{a}*{b}"}), render_response(product), product


def _tokenizer():
    rng = random.Random(0)
    return build_tiny_tokenizer("".join("".join(_example(rng)) for _ in range(50)) + "calc 0123456789\n")


def test_tools_extension_round_trip(tmp_path):
    tok = _tokenizer()
    cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=64)
    agent = Agent(build_tiny_model(tok, cfg, seed=0), tok)
    agent.extensions["tools"] = ToolUse(default_registry(), max_calls=3)
    save_agent(agent, tmp_path / "agent")
    assert json.loads((tmp_path / "agent" / "tools.json").read_text())["tools"] == ["calculator"]
    loaded = load_agent(tmp_path / "agent")
    use = loaded.extensions["tools"]
    assert isinstance(use, ToolUse) and use.max_calls == 3 and use.registry.names == ["calculator"]
    (tmp_path / "agent" / "tools.json").write_text('{"tools": ["shell"]}')
    with pytest.raises(ForgeError, match="unknown built-in tool"):
        load_agent(tmp_path / "agent")
    with pytest.raises(ValueError, match="memory store path"):
        builtin_registry(["memory_search"])


def test_answer_runs_the_hook_and_continues(tmp_path, monkeypatch):
    """The loop itself, with generation replaced: call -> response appended -> generation continues, bounded."""
    import sys

    answer_module = sys.modules["agent_forge.inference.answer"]
    from agent_forge.inference.answer import Reply

    outputs = iter([[Reply('<tool_call>{"name":"calculator","arguments":{"expression":"6*7"}}')], [Reply("42")]])
    monkeypatch.setattr(answer_module, "_generate", lambda *a, **k: next(outputs))
    tok = _tokenizer()
    cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=64)
    agent = Agent(build_tiny_model(tok, cfg, seed=0), tok, extensions={"tools": ToolUse()})
    (reply,) = answer(agent, ["calc 6*7"])
    assert reply.text == '<tool_call>{"name":"calculator","arguments":{"expression":"6*7"}}</tool_call><tool_response>42</tool_response>42'
    assert final_answer(reply.text) == "42"
    # a model that calls forever is cut after max_calls
    looping = iter([[Reply(render_call("calculator", {"expression": "1"}))]] * 10)
    monkeypatch.setattr(answer_module, "_generate", lambda *a, **k: next(looping))
    (reply,) = answer(agent, ["x"], hooks=[], max_hook_rounds=10)
    assert reply.text.count("<tool_response>") == 4  # ToolUse.max_calls


@pytest.mark.slow
def test_tiny_model_learns_to_call_the_calculator(tmp_path):
    torch.manual_seed(0)
    rng = random.Random(0)
    tok = _tokenizer()
    cfg = TinyModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=192)
    model = build_tiny_model(tok, cfg, seed=0)
    fmt = prompt_format(tok)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(800):
        prompts, answers = [], []
        for _ in range(16):  # both halves of a trace: the call, then the answer after the tool response
            prompt, call, response, product = _example(rng)
            prompts += [fmt.render(prompt), fmt.render(prompt) + call + response]
            answers += [call, product]
        batch = encode_pairs(tok, prompts, answers, render=False)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                 batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    agent = Agent(model, tok, extensions={"tools": ToolUse(default_registry())})
    save_agent(agent, tmp_path / "agent")
    agent = load_agent(tmp_path / "agent")  # tools.json brings the hook back
    tests = [_example(random.Random(1000 + i)) for i in range(20)]
    replies = answer(agent, [t[0] for t in tests], max_new_tokens=80)
    correct = sum(final_answer(r.text) == t[3] for r, t in zip(replies, tests))
    called = sum(r.text.startswith(t[1]) for r, t in zip(replies, tests))
    assert called >= 16 and correct >= 15, (called, correct, replies[0].text)
    # without the hook the answer stops at the call: the number comes from the tool, not the model
    agent.extensions.clear()
    plain = answer(agent, [t[0] for t in tests], max_new_tokens=80)
    assert sum(final_answer(r.text) == t[3] for r, t in zip(plain, tests)) <= 2
