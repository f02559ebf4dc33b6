"""The interaction log as the real server writes it: one row per answered request, committed before the answer."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import openai
import pytest

from agent_forge.interactions import InteractionLog, verify_answer
from agent_forge.serve import ServeSettings

from .helpers import TIME_PROMPT, TOOLS, get_json, running_server

KEY = "sk-log-test-42"


@pytest.fixture(scope="module")
def logged(tool_agent_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "interactions.sqlite"
    settings = ServeSettings(api_keys=(KEY,), max_tokens=64, log_target=str(path), redact=("hunter2",))
    with running_server(settings, source=tool_agent_path, model_name="tiny") as (base, app):
        reader = InteractionLog.open(path)  # a second connection, as any reader of the file would have
        yield base, app, reader
        reader.close()


@pytest.fixture(scope="module")
def client(logged):
    return openai.OpenAI(base_url=logged[0] + "/v1", api_key=KEY, max_retries=0)


def test_a_chat_answer_has_its_row_with_everything(logged, client):
    _, app, log = logged
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "say hi"}])
    row = log.get(reply.id)  # no waiting: the row was committed before the answer was sent
    assert row is not None
    assert (row["endpoint"], row["status"], row["prompt"], row["answer"]) == ("chat", 200, "say hi", "hi there")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert row["model"] == "tiny" and row["model_version"] == app.state.forge.model_version
    assert row["model_version"].startswith("tool-agent@")
    assert 0 < row["confidence"] <= 1 and row["latency_ms"] > 0 and row["ttft_ms"] is not None
    assert row["finish_reason"] == "stop" and row["thoughts"] == [] and row["tool_calls"] == []
    assert row["domain"] is None and row["verified"] is None  # "say hi" is no task: nothing to verify
    assert row["conversation"] == [{"role": "user", "content": "say hi"}]


def test_streamed_answers_are_committed_before_done(logged, client):
    base, _, log = logged
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "count to five"}]}),
                       ("/v1/completions", {"prompt": "count to five\n", "max_tokens": 20})):
        with httpx.stream("POST", base + path, json={"model": "tiny", "stream": True, **body},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
            events = [line for line in response.iter_lines() if line]
        assert events[-1] == "data: [DONE]"
        response_id = json.loads(events[0][6:])["id"]
        row = log.get(response_id)
        assert row is not None and row["answer"] == "1 2 3 4 5" and row["status"] == 200


def test_completions_rows_and_several_choices(logged, client):
    log = logged[2]
    reply = client.completions.create(model="tiny", prompt=["say hi\n", "count to five\n"], max_tokens=20)
    row = log.get(reply.id)
    assert (row["endpoint"], row["prompt"], row["answer"]) == ("completions", "say hi\n", "hi there")
    assert [c["text"] for c in row["choices"]] == ["hi there", "1 2 3 4 5"]
    assert row["conversation"] == [{"prompt": "say hi\n"}, {"prompt": "count to five\n"}]


def test_tool_calls_are_recorded_and_not_verified(logged, client):
    log = logged[2]
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": TIME_PROMPT}],
                                           tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls"
    row = log.get(reply.id)
    assert row["tool_calls"] == [{"name": "get_time", "arguments": {}, "result": None}]
    assert row["tool_names"] == "get_time" and row["verified"] is None


def test_a_task_prompt_is_verified_automatically(logged, client):
    base, _, log = logged
    prompt = "47+85 (digits reversed)"
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=8)
    row = log.get(reply.id)
    assert (row["domain"], row["reference"]) == ("arithmetic", "231")
    # the same verdict the task verifier gives the answer the client received (the tiny agent cannot add)
    assert row["verified"] == verify_answer(prompt, reply.choices[0].message.content)[1]
    metrics = get_json(base + "/metrics")[1]
    assert 'agent_forge_verified_answers_total{correct="' in metrics and 'domain="arithmetic"' in metrics


def test_secrets_and_api_keys_are_redacted(logged, client):
    log = logged[2]
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": f"my key {KEY} and password hunter2"}], max_tokens=4)
    row = log.get(reply.id)
    assert row["prompt"] == "my key [REDACTED] and password [REDACTED]"
    assert KEY not in json.dumps(row["conversation"])


def test_a_timed_out_request_has_an_error_row(logged, client):
    base, app, log = logged
    state = app.state.forge
    settings = state.settings
    state.settings = replace(settings, request_timeout_s=0.3)
    state.engine.pause()
    try:
        response = httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                              json={"model": "tiny", "messages": [{"role": "user", "content": "say hi"}]})
    finally:
        state.engine.resume()
        state.settings = settings
    assert response.status_code == 408
    errors = log.backend.read("SELECT status, error FROM interactions WHERE status = 408")
    assert errors and "longer than" in errors[-1]["error"]


def test_without_a_log_nothing_is_written_and_a_dead_log_refuses_answers(tool_agent_path, tmp_path):
    path = tmp_path / "log.sqlite"
    with running_server(ServeSettings(log_target=str(path)), source=tool_agent_path, model_name="tiny") as (base, app):
        app.state.forge.log.writer.close()  # the database is gone: answers must not go out unlogged
        response = httpx.post(base + "/v1/chat/completions", timeout=30,
                              json={"model": "tiny", "messages": [{"role": "user", "content": "say hi"}]})
        assert response.status_code == 503 and response.json()["error"]["code"] == "log_unavailable"
        assert "agent_forge_log_failures_total 1.0" in get_json(base + "/metrics")[1]
