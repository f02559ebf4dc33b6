"""The tool-call format: parsing (never raising), pending calls, OpenAI conversion and the registry."""

import json

import pytest

from agent_forge.tools import (
    CallError, ToolCall, ToolRegistry, ToolUse, calculate, CalculatorError, default_registry, final_answer,
    from_openai_tool_calls, parse_tool_calls, pending_call, render_call, render_response, split_calls,
    to_openai_tool_calls,
)


def test_parse_and_render_round_trip():
    text = "let me compute " + render_call("calculator", {"expression": "2+3"}) + render_call("f", '{"x": 1}')
    calls = parse_tool_calls(text)
    assert calls == [ToolCall("calculator", {"expression": "2+3"}), ToolCall("f", {"x": 1})]
    content, found = split_calls(text)
    assert content == "let me compute " and len(found) == 2


def test_openai_conversion_is_one_to_one():
    calls = [ToolCall("calculator", {"expression": "2*(3+4)"}), ToolCall("memory_search", {"query": "ünï", "k": 5})]
    openai = to_openai_tool_calls(calls, ids=["call_a", "call_b"])
    assert openai[0] == {"id": "call_a", "type": "function",
                         "function": {"name": "calculator", "arguments": json.dumps({"expression": "2*(3+4)"})}}
    assert [c["id"] for c in openai] == ["call_a", "call_b"]
    assert from_openai_tool_calls(openai) == calls
    assert len({c["id"] for c in to_openai_tool_calls(calls)}) == 2  # fresh ids are distinct


@pytest.mark.parametrize("body, why", [
    ('{"name": "calculator", "arguments": {"expression": "1+', "truncated"),
    ("[1, 2]", "JSON object"),
    ('{"arguments": {}}', "string name"),
    ('{"name": "calculator", "arguments": [1]}', "JSON object"),
    ("", "empty"),
])
def test_bad_calls_become_errors(body, why):
    closed = why != "truncated"
    text = "<tool_call>" + body + ("</tool_call>" if closed else "")
    (call,) = parse_tool_calls(text)
    assert isinstance(call, CallError) and why in call.message
    assert default_registry().execute(call).startswith("error:")


def test_pending_call_ignores_answered_calls():
    call = render_call("calculator", {"expression": "1+1"})
    assert pending_call("no call") is None
    assert pending_call(call) == ToolCall("calculator", {"expression": "1+1"})
    assert pending_call(call + render_response("2") + " so 2") is None


def test_tool_use_hook_closes_cut_calls_and_bounds_rounds():
    hook = ToolUse(default_registry(), max_calls=2)
    cut = '<tool_call>{"name":"calculator","arguments":{"expression":"6*7"}}'
    assert hook.continue_after(None, "p", cut) == "</tool_call><tool_response>42</tool_response>"
    text = render_call("calculator", {"expression": "1+1"})
    assert hook.continue_after(None, "p", text) == "<tool_response>2</tool_response>"
    twice = (text + render_response("2")) * 2 + text
    assert hook.continue_after(None, "p", twice) is None  # max_calls reached
    assert final_answer("x" + render_response("2") + " answer 2") == " answer 2"


def test_registry_schema_and_validation():
    def lookup(city: str, days: int = 1) -> dict:
        """Weather for a city.

        Args:
            city: The city name.
            days: How many days ahead.
        """
        return {"city": city, "days": days}

    registry = ToolRegistry([lookup])
    (schema,) = registry.schemas()
    assert schema["type"] == "function" and schema["function"]["name"] == "lookup"
    assert schema["function"]["parameters"]["properties"]["days"]["type"] == "integer"
    assert schema["function"]["parameters"]["required"] == ["city"]
    assert json.loads(registry.execute(ToolCall("lookup", {"city": "Oslo", "days": 2}))) == {"city": "Oslo", "days": 2}
    assert "must be integer" in registry.execute(ToolCall("lookup", {"city": "Oslo", "days": True}))
    assert "missing argument" in registry.execute(ToolCall("lookup", {}))
    assert "unknown argument" in registry.execute(ToolCall("lookup", {"city": "x", "when": 1}))
    assert "unknown tool" in registry.execute(ToolCall("weather", {}))


def test_registry_reports_raising_and_hanging_tools():
    import time

    def boom(x: int) -> int:
        """Raises.

        Args:
            x: Anything.
        """
        raise RuntimeError("kaput")

    def sleepy(x: int) -> int:
        """Sleeps.

        Args:
            x: Seconds.
        """
        time.sleep(x)
        return x

    registry = ToolRegistry([boom, sleepy], timeout_s=0.2)
    assert registry.execute(ToolCall("boom", {"x": 1})) == "error: boom: kaput"
    start = time.monotonic()
    assert "time limit" in registry.execute(ToolCall("sleepy", {"x": 5}))
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("expression, value", [
    ("1+2*3", 7), ("(1+2)*3", 9), ("-3**2", -9), ("7//2", 3), ("7%3", 1), ("7/2", 3.5), ("2**-1", 0.5),
    ("--5", 5), ("123456789*987654321", 123456789 * 987654321), ("  ( 4 )  ", 4), ("0.1+0.2", 0.1 + 0.2),
])
def test_calculator_values(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize("expression", [
    "9**9**9", "2**10000", "10**101", "1/0", "5%0", "(-8)**0.5", "x+1", "__import__('os')", "abs(1)", "1 if 1 else 2",
    "1<2", "1e5", "1_000", "١٢+٣", "（1）", "(" * 40 + "1" + ")" * 40, "1" * 60, "", "1+", "[1]", "0**-1",
    "0.5**-1000",
])
def test_calculator_refuses(expression):
    with pytest.raises(CalculatorError):
        calculate(expression)
