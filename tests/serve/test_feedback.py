"""`POST /v1/feedback` on the real server: linked to a response id; malformed feedback is a 4xx and changes nothing."""

from __future__ import annotations

import httpx
import openai
import pytest

from agent_forge.serve import ServeSettings

from .helpers import running_server

KEY = "sk-feedback-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tool_agent_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("feedback") / "interactions.sqlite"
    settings = ServeSettings(api_keys=(KEY,), max_tokens=32, log_target=str(path))
    with running_server(settings, source=tool_agent_path, model_name="tiny") as (base, app):
        yield base, app.state.forge.log


@pytest.fixture(scope="module")
def answered(server):
    client = openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)
    task = client.chat.completions.create(model="tiny", max_tokens=6,
                                          messages=[{"role": "user", "content": "47+85 (digits reversed)"}])
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "say hi"}])
    return task.id, plain.id


def post(server, body=None, content=None, headers=AUTH):
    return httpx.post(server[0] + "/v1/feedback", json=body, content=content, headers=headers, timeout=30)


def test_thumbs_and_corrections_are_stored_and_verified(server, answered):
    task_id, plain_id = answered
    log = server[1]
    up = post(server, {"response_id": plain_id, "rating": "up"})
    assert up.status_code == 200 and up.json()["object"] == "feedback" and up.json()["correction_verified"] is None
    right = post(server, {"response_id": task_id, "rating": "down", "correction": "231"}).json()
    wrong = post(server, {"response_id": task_id, "correction": "132", "comment": "a user's mistake"}).json()
    assert (right["correction_verified"], wrong["correction_verified"]) == (1.0, 0.0)
    rows = log.feedback_of(task_id)
    assert [(r["rating"], r["correction"], r["correction_verified"]) for r in rows] == [(-1, "231", 1.0),
                                                                                        (None, "132", 0.0)]
    assert [r["rating"] for r in log.feedback_of(plain_id)] == [1]


@pytest.mark.parametrize("body, content, status", [
    ({"response_id": "chatcmpl-doesnotexist", "rating": "up"}, None, 404),
    ({"response_id": "RID", "rating": 1}, None, 422),
    ({"response_id": "RID", "rating": "sideways"}, None, 422),
    ({"response_id": 12345, "rating": "up"}, None, 422),
    ({"response_id": "RID", "correction": ["231"]}, None, 422),
    ({"response_id": "RID", "rating": "up", "extra": True}, None, 422),
    ({"response_id": "RID"}, None, 422),
    ({"response_id": "RID", "comment": "x" * 5000}, None, 422),  # longer than a comment may be
    ({"response_id": "RID", "correction": "y" * 20000}, None, 413),  # beyond max_feedback_bytes (16 KiB)
    (None, b"{not json", 400),
    (None, b"[1, 2]", 400),
])
def test_malformed_feedback_is_refused_and_changes_nothing(server, answered, body, content, status):
    log = server[1]
    before = log.count("feedback")
    if isinstance(body, dict) and body.get("response_id") == "RID":
        body = {**body, "response_id": answered[1]}
    response = post(server, body, content)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert log.count("feedback") == before


def test_feedback_needs_the_key_and_a_log(server, answered, tool_agent_path):
    assert post(server, {"response_id": answered[1], "rating": "up"}, headers={}).status_code == 401
    with running_server(ServeSettings(), source=tool_agent_path, model_name="tiny") as (base, _):
        response = httpx.post(base + "/v1/feedback", json={"response_id": "x", "rating": "up"}, timeout=30)
        assert response.status_code == 501 and response.json()["error"]["code"] == "log_disabled"
