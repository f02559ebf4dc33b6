"""Keys, limits and malformed requests: OpenAI-shaped errors with the right status, and the server keeps serving."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import openai
import pytest

from agent_forge.serve import ServeSettings

from .helpers import get_json, running_server

KEY = "sk-limits"
LIMITS = ServeSettings(api_keys=(KEY,), max_body_bytes=3000, max_tokens=32, max_concurrent=2, max_prompt_tokens=300)


@pytest.fixture(scope="module")
def server(tool_agent_path):
    with running_server(LIMITS, source=tool_agent_path, model_name="tiny") as (base, app):
        yield base, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


def chat(client, content="say hi", **kwargs):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **kwargs)


def post(server, body=None, *, content=None, key=KEY, path="/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return httpx.post(server[0] + path, json=body, content=content, headers=headers, timeout=30)


def assert_openai_error(response: httpx.Response, status: int, retry: bool | None = False) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if retry is False:
        assert response.headers["x-should-retry"] == "false"
    return error


def still_serving(client) -> None:
    assert chat(client).choices[0].message.content == "hi there"


def test_keys_are_required_and_checked(server, client):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server[0] + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    missing = post(server, {"model": "tiny", "messages": []}, key=None)
    assert assert_openai_error(missing, 401)["code"] == "invalid_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    # health and metrics stay open for load balancers and Prometheus
    assert get_json(server[0] + "/health")[0] == 200 and get_json(server[0] + "/metrics")[0] == 200
    still_serving(client)


def test_oversized_bodies_get_413(server, client):
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, "x" * 5000)
    assert caught.value.status_code == 413 and caught.value.body["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit is enforced on the bytes as they arrive
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    assert_openai_error(post(server, content=chunks()), 413)
    still_serving(client)


def test_malformed_and_invalid_requests_get_clear_4xx(server, client):
    error = assert_openai_error(post(server, content=b'{"model": "tiny", "messages": ['), 400)
    assert "not valid JSON" in error["message"]
    assert_openai_error(post(server, [1, 2]), 400)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        chat(client, temperature=5)
    assert caught.value.body["param"] == "temperature"
    missing = assert_openai_error(post(server, {"model": "tiny"}), 422)
    assert missing["param"] == "messages" and "required" in missing["message"].lower()
    role = assert_openai_error(post(server, {"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}), 422)
    assert role["param"].startswith("messages.0.role")
    with pytest.raises(openai.BadRequestError, match="not supported"):
        chat(client, presence_penalty=1.0)
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    assert_openai_error(post(server, path="/v1/nowhere"), 404)
    assert_openai_error(httpx.get(server[0] + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}), 405)
    still_serving(client)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    still_serving(client)


def test_token_limits(client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, max_tokens=33)
    assert caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, "a" * 400)  # fits the body limit, not the prompt-token limit
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="say hi\n", n=99)
    still_serving(client)


def test_concurrency_limit_gives_429_and_the_server_recovers(server, client):
    state = server[1].state.forge
    state.engine.pause()  # hold admitted requests in the queue, so the limit is reached deterministically
    results = []
    workers = [threading.Thread(target=lambda: results.append(chat(client).choices[0].message.content)) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 20
        while state.in_flight < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as caught:
            chat(client)
        assert caught.value.response.headers.get("retry-after") == "1"
        assert "x-should-retry" not in caught.value.response.headers  # retrying later can help
    finally:
        state.engine.resume()
        for worker in workers:
            worker.join(30)
    assert results == ["hi there", "hi there"]
    still_serving(client)


def test_request_time_limit_gives_408(server, client):
    state = server[1].state.forge
    state.settings = replace(LIMITS, request_timeout_s=0.3)
    state.engine.pause()
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            chat(client)
        assert caught.value.status_code == 408 and caught.value.body["code"] == "request_timeout"
        assert state.in_flight == 0
    finally:
        state.engine.resume()
        state.settings = LIMITS
    still_serving(client)


def test_health_is_503_while_the_agent_loads(tool_agent_path, monkeypatch):
    import agent_forge.serve.state as state_module

    release = threading.Event()
    real_load = state_module.load_agent

    def slow_load(*args, **kwargs):
        release.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(state_module, "load_agent", slow_load)
    with running_server(ServeSettings(), source=tool_agent_path, wait_ready=False) as (base, _):
        status, body = get_json(base + "/health")
        assert (status, body["status"]) == (503, "loading")
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.models.list()
        assert caught.value.status_code == 503 and caught.value.body["code"] == "model_loading"
        release.set()
        deadline = time.monotonic() + 30
        while get_json(base + "/health")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert [m.id for m in client.models.list().data] == ["tiny"]
