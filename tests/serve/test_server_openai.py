"""The real server (uvicorn on 127.0.0.1) driven by the official `openai` client: the happy paths."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from agent_forge.models import load_agent
from agent_forge.serve import ServeSettings
from agent_forge.serve.prompts import encode_prompt

from .helpers import TIME_PROMPT, TOOL_CALL, TOOLS, get_json, rendered_prompt, running_server

KEY = "sk-test-123"


@pytest.fixture(scope="module")
def server(tool_agent_path):
    settings = ServeSettings(api_keys=(KEY,), max_tokens=128)
    with running_server(settings, source=tool_agent_path, model_name="tiny") as (base, app):
        yield base, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(tool_agent_path):
    return load_agent(tool_agent_path).tokenizer


def chat(client, content, **kwargs):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **kwargs)


def test_model_list_and_retrieve(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").owned_by == "agent-forge"


def test_chat_answers_with_usage_counted_in_tokens(client, tokenizer):
    reply = chat(client, "say hi")
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", "hi there", "stop")
    assert reply.object == "chat.completion" and reply.model == "tiny"
    prompt_ids = encode_prompt(tokenizer, rendered_prompt(tokenizer, "say hi", None))
    # the answer's tokens and the terminator that ended it (character-level tokenizer)
    assert reply.usage.prompt_tokens == len(prompt_ids)
    assert reply.usage.completion_tokens == len("hi there") + 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert getattr(choice.message, "reasoning_content", None) is None  # thoughts are hidden unless asked for


def test_streaming_chunks_end_with_usage_and_done(server, client):
    stream = chat(client, "count to five", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "1 2 3 4 5"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len("1 2 3 4 5") + 1
    assert all(c.usage is None for c in chunks[:-1])
    # the wire format itself: server-sent events, each a JSON chunk, closed by the literal [DONE]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "say hi"}], "stream": True}
    with httpx.stream("POST", server[0] + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "stop"


def test_completions_plain_streamed_and_echoed(client):
    reply = client.completions.create(model="tiny", prompt="say hi\n", max_tokens=20)
    assert reply.object == "text_completion"
    assert (reply.choices[0].text, reply.choices[0].finish_reason) == ("hi there", "stop")
    assert reply.usage.completion_tokens == len("hi there") + 1
    streamed = client.completions.create(model="tiny", prompt="say hi\n", max_tokens=20, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "hi there"
    echoed = client.completions.create(model="tiny", prompt="say hi\n", max_tokens=20, echo=True)
    assert echoed.choices[0].text == "say hi\nhi there"
    short = client.completions.create(model="tiny", prompt="say hi\n", max_tokens=2)
    assert (short.choices[0].text, short.choices[0].finish_reason) == ("hi", "length")
    several = client.completions.create(model="tiny", prompt=["say hi\n", "count to five\n"], max_tokens=20)
    assert [c.text for c in several.choices] == ["hi there", "1 2 3 4 5"]


def test_stop_strings_cut_the_answer(client):
    reply = chat(client, "count to five", stop=["3"])
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("1 2 ", "stop")
    streamed = chat(client, "count to five", stop=[" 3"], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "1 2"


def test_tool_call_comes_back_in_the_openai_shape(client):
    reply = chat(client, TIME_PROMPT, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "get_time", {})
    assert call.id.startswith("call_")
    # the same while streaming: no markup in the content, one tool_calls delta, finish_reason tool_calls
    chunks = [c for c in chat(client, TIME_PROMPT, tools=TOOLS, stream=True) if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, tc.function.arguments) for tc in calls] == [(0, "get_time", "{}")]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_markup_stays_text_when_the_tool_is_not_declared(client):
    # tool_choice none: tools are neither rendered nor parsed
    reply = chat(client, TIME_PROMPT, tools=TOOLS, tool_choice="none")
    assert reply.choices[0].finish_reason != "tool_calls" and not reply.choices[0].message.tool_calls


def test_a_conversation_with_a_tool_result_renders_and_answers(client):
    messages = [
        {"role": "user", "content": TIME_PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    reply = client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, max_tokens=8)
    assert reply.choices[0].finish_reason in {"stop", "length", "tool_calls"}
    assert reply.usage.prompt_tokens > len(TOOL_CALL)


def test_several_choices_and_seeded_sampling(client):
    first = chat(client, "count to five", n=3, temperature=1.5, seed=7, max_tokens=12)
    again = chat(client, "count to five", n=3, temperature=1.5, seed=7, max_tokens=12)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    assert 3 <= first.usage.completion_tokens <= 3 * 12


def test_concurrent_requests_share_decode_steps(server, client):
    prompts = ["say hi", "count to five", "say hi", "count to five"] * 4
    with ThreadPoolExecutor(len(prompts)) as pool:
        replies = list(pool.map(lambda p: chat(client, p).choices[0].message.content, prompts))
    assert replies == [{"say hi": "hi there", "count to five": "1 2 3 4 5"}[p] for p in prompts]
    assert server[1].state.forge.engine.stats.max_rows > 1


def test_health_and_prometheus_metrics(server, client):
    chat(client, "say hi")
    assert get_json(server[0] + "/health") == (200, {"status": "ok", "model": "tiny"})
    status, text = get_json(server[0] + "/metrics")
    assert status == 200
    for name in ("agent_forge_requests_running", "agent_forge_requests_waiting", "agent_forge_prompt_tokens_total",
                 "agent_forge_generation_tokens_total", "agent_forge_time_to_first_token_seconds_bucket",
                 "agent_forge_e2e_request_latency_seconds_bucket", 'agent_forge_requests_total{endpoint="chat",status="200"}'):
        assert name in text, name
    generated = next(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("agent_forge_generation_tokens_total"))
    assert generated > 0


def test_thoughts_are_hidden_unless_the_request_asks(tiny_model, tiny_tokenizer):
    import copy

    from agent_forge.models import Agent
    from agent_forge.models.agent import Thoughts
    from agent_forge.models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT, HeadInfo, MixingHead, add_thought_tokens

    agent = Agent(tiny_model, copy.deepcopy(tiny_tokenizer))
    tokens, _ = add_thought_tokens(agent.model, agent.tokenizer)
    agent.extensions["thoughts"] = Thoughts(MixingHead(agent.model.config.hidden_size), tokens,
                                            HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT))
    with running_server(ServeSettings(), agent=agent, model_name="thinker") as (base, _):
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        ask = {"model": "thinker", "messages": [{"role": "user", "content": "1+2"}], "max_tokens": 3}
        hidden = client.chat.completions.create(**ask)
        assert getattr(hidden.choices[0].message, "reasoning_content", None) is None
        shown = client.chat.completions.create(**ask, extra_body={"include_reasoning": True})
        assert shown.choices[0].message.reasoning_content  # one thought per answer token, joined by newlines
        assert shown.choices[0].message.content == hidden.choices[0].message.content
        chunks = list(client.chat.completions.create(**ask, stream=True, extra_body={"include_reasoning": True}))
        assert any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)
        plain = client.chat.completions.create(**ask, extra_body={"think": False, "include_reasoning": True})
        assert plain.choices[0].message.reasoning_content == ""


def test_an_agent_design_is_served_as_saved(tiny_model, tiny_tokenizer, tmp_path):
    """An ADAS design travels in the agent folder and the server answers through it (here: a design that
    abstains on every answer, which no plain generation of this model produces)."""
    import copy

    from agent_forge.inference.design import ABSTAIN_TEXT
    from agent_forge.models import Agent, save_agent
    from agent_forge.models.formats.design import AgentDesign

    design = AgentDesign(name="always-abstain", retry_below=1.0, retries=0, abstain=True)
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer), extensions={"design": design}), tmp_path / "a")
    with running_server(ServeSettings(), source=tmp_path / "a", model_name="designed") as (base, _):
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="designed", messages=[{"role": "user", "content": "1+2"}],
                                               max_tokens=4)
        assert reply.choices[0].message.content == ABSTAIN_TEXT
