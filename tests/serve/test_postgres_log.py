"""The interaction log in PostgreSQL: a real server started for the test (skipped, saying why, where none can)."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from agent_forge.errors import ForgeError
from agent_forge.interactions import Feedback, Interaction, InteractionLog, Redactor, Retention
from agent_forge.serve import ServeSettings

from .helpers import get_json, running_server
from .postgres import postgres_cluster, postgres_unavailable

pytestmark = pytest.mark.skipif(postgres_unavailable() is not None, reason=str(postgres_unavailable()))


@pytest.fixture(scope="module")
def pg_url():
    with postgres_cluster() as url:
        yield url


def test_store_round_trip_retention_and_group_commit(pg_url):
    commits: list[int] = []
    log = InteractionLog.open(pg_url, retention=Retention(rows=50), redactor=Redactor(["pg-secret"]),
                              maintenance_every_s=3600, on_commit=lambda n, s: commits.append(n))
    try:
        assert log.describe() == pg_url
        log.record(Interaction("r0", "chat", "m", "v1", prompt="pg-secret here", thoughts=["t"],
                               tool_calls=[{"name": "calculator", "arguments": {"x": 1}, "result": "1"}])).result(10)
        row = log.get("r0")
        assert row["prompt"] == "[REDACTED] here" and row["tool_calls"][0]["result"] == "1" and row["thoughts"] == ["t"]
        threads = [threading.Thread(target=lambda k=k: [log.record(Interaction(f"r{k}-{i}", "chat", "m", "v1")).result(10)
                                                      for i in range(20)]) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log.count() == 81 and max(commits) > 1
        log.add_feedback(Feedback("r0", rating=1)).result(10)
        log.prune().result(10)
        assert log.count() == 50 and log.count("feedback") == 0  # r0 was among the oldest
        with pytest.raises(Exception):
            log.record(Interaction("r3-19", "chat", "m", "v1")).result(10)  # a duplicate id fails alone
        log.record(Interaction("after", "chat", "m", "v1")).result(10)
    finally:
        log.close()
    # the schema is there for the next opener
    again = InteractionLog.open(pg_url)
    assert again.exists("after")
    again.close()


def test_the_server_logs_to_postgres_and_takes_feedback(pg_url, tool_agent_path):
    settings = ServeSettings(max_tokens=32, log_target=pg_url)
    with running_server(settings, source=tool_agent_path, model_name="tiny") as (base, app):
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "47+85 (digits reversed)"}],
                                               max_tokens=6)
        row = app.state.forge.log.get(reply.id)
        assert row["domain"] == "arithmetic" and row["reference"] == "231" and row["status"] == 200
        ok = httpx.post(base + "/v1/feedback", json={"response_id": reply.id, "correction": "231"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["correction_verified"] == 1.0
        assert httpx.post(base + "/v1/feedback", json={"response_id": "nope", "rating": "up"}, timeout=30).status_code == 404
        assert get_json(base + "/dashboard/data")[1]["totals"]["requests"] >= 1


def test_an_unreachable_database_is_one_line(tmp_path):
    with pytest.raises(ForgeError, match="cannot"):
        InteractionLog.open("postgresql://nobody@127.0.0.1:1/none")
