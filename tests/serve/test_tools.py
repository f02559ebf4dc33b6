"""Tool calls: parsing the model's `<tool_call>` markup, and rendering messages and tools into prompts."""

from __future__ import annotations

import copy
import json

from agent_forge.models import build_tiny_tokenizer, prompt_format
from agent_forge.serve.chat import declared_calls
from agent_forge.serve.prompts import render_chat, tools_preamble
from agent_forge.serve.protocol import ChatMessage

from .helpers import ALPHABET, TOOLS

TOKENIZER = build_tiny_tokenizer(ALPHABET)


def test_calls_to_declared_tools_become_openai_tool_calls():
    text = 'ok <tool_call>{"name": "get_time", "arguments": {"tz": "utc"}}</tool_call><tool_call>{"name":"get_time"}'
    content, calls = declared_calls(text, ["get_time"])
    assert content == "ok "
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "get_time", {"tz": "utc"}), ("function", "get_time", {})]
    assert len({c["id"] for c in calls}) == 2


def test_undeclared_or_broken_calls_stay_text():
    for text in ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "<tool_call>{not json}</tool_call>"):
        assert declared_calls(text, ["get_time"]) == (text, [])


def test_one_user_message_renders_as_the_agent_was_trained():
    fmt = prompt_format(TOKENIZER)
    assert render_chat(TOKENIZER, [ChatMessage(role="user", content="12+34")], None) == fmt.render("12+34")


def test_plain_conversation_with_tools_and_a_tool_result():
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="time?"),
        ChatMessage(role="assistant", tool_calls=[{"id": "c1", "function": {"name": "get_time", "arguments": "{}"}}]),
        ChatMessage(role="tool", tool_call_id="c1", content="noon"),
    ]
    text = render_chat(TOKENIZER, messages, TOOLS)
    assert text == (tools_preamble(TOOLS) + "be brief\ntime?\n" + '<tool_call>{"name":"get_time","arguments":{}}</tool_call>'
                    + TOKENIZER.eos_token + "<tool_response>noon</tool_response>\n")


def test_chat_templates_get_tools_their_way_or_as_a_system_preamble():
    ignoring = copy.deepcopy(TOKENIZER)
    ignoring.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>{% endfor %}"
                              "{% if add_generation_prompt %}<assistant>{% endif %}")
    text = render_chat(ignoring, [ChatMessage(role="user", content="hi")], TOOLS)
    assert text.startswith("<system>you may call these tools") and text.endswith("<user>hi<eos><assistant>")
    knowing = copy.deepcopy(TOKENIZER)
    knowing.chat_template = ("{% if tools %}[{{ tools | length }} tools]{% endif %}"
                             "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>{% endfor %}<assistant>")
    assert render_chat(knowing, [ChatMessage(role="user", content="hi")], TOOLS) == "[1 tools]<user>hi<eos><assistant>"
