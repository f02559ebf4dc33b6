"""The interaction log on SQLite: rows round-trip, secrets are redacted, retention applies, commits are grouped."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from agent_forge.errors import ForgeError
from agent_forge.interactions import Feedback, Interaction, InteractionLog, Redactor, Retention, tool_trace


def row(i, **kw) -> Interaction:
    return Interaction(f"chatcmpl-{i}", "chat", "tiny", "v1", prompt=f"prompt {i}", answer=f"answer {i}", **kw)


def test_rows_round_trip_with_their_json_fields(tmp_path):
    log = InteractionLog.open(tmp_path / "log.sqlite")
    try:
        calls = [{"name": "calculator", "arguments": {"expression": "2+3"}, "result": "5"}]
        log.record(row(1, thoughts=["think"], tool_calls=calls, expert="math", confidence=0.75,
                       conversation=[{"role": "user", "content": "prompt 1"}])).result(10)
        got = log.get("chatcmpl-1")
        assert got["thoughts"] == ["think"] and got["tool_calls"] == calls and got["tool_names"] == "calculator"
        assert (got["expert"], got["confidence"], got["model_version"]) == ("math", 0.75, "v1")
        assert got["conversation"] == [{"role": "user", "content": "prompt 1"}]
        assert log.get("chatcmpl-2") is None and not log.exists("chatcmpl-2")
        log.add_feedback(Feedback("chatcmpl-1", rating=1)).result(10)
        assert [f["rating"] for f in log.feedback_of("chatcmpl-1")] == [1]
    finally:
        log.close()
    # WAL mode, readable by any SQLite client
    conn = sqlite3.connect(tmp_path / "log.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == 1


def test_configured_secrets_never_reach_the_database(tmp_path):
    log = InteractionLog.open(tmp_path / "log.sqlite", redactor=Redactor(["sk-live-123", r"re:tok_[a-z0-9]{6}"]))
    try:
        log.record(Interaction("r1", "chat", "m", "v", prompt="use sk-live-123 now", answer="tok_abc123 ok",
                               thoughts=["the key is sk-live-123"],
                               tool_calls=[{"name": "f", "arguments": {"key": "sk-live-123"}, "result": "tok_zzz999"}])
                   ).result(10)
        log.add_feedback(Feedback("r1", correction="sk-live-123")).result(10)
    finally:
        log.close()
    raw = (tmp_path / "log.sqlite").read_bytes() + (tmp_path / "log.sqlite-wal").read_bytes() \
        if (tmp_path / "log.sqlite-wal").exists() else (tmp_path / "log.sqlite").read_bytes()
    assert b"sk-live-123" not in raw and b"tok_abc123" not in raw and b"tok_zzz999" not in raw
    assert b"[REDACTED]" in raw
    with pytest.raises(ForgeError, match="regular expression"):
        Redactor(["re:(unclosed"])


def test_retention_by_rows_and_by_age(tmp_path):
    log = InteractionLog.open(tmp_path / "log.sqlite", retention=Retention(days=1, rows=5), maintenance_every_s=3600)
    try:
        old = row("old", created=time.time() - 3 * 86400)
        for f in [log.record(old)] + [log.record(row(i)) for i in range(8)]:
            f.result(10)
        log.add_feedback(Feedback("chatcmpl-0", rating=-1)).result(10)
        log.add_feedback(Feedback("chatcmpl-7", rating=1)).result(10)
        log.prune().result(10)
        assert sorted(log.response_ids()) == [f"chatcmpl-{i}" for i in range(3, 8)]
        assert log.count("feedback") == 1  # the pruned answer's feedback went with it
    finally:
        log.close()
    with pytest.raises(ForgeError, match="retention-rows"):
        Retention(rows=0)


def test_concurrent_writes_share_transactions_and_a_bad_one_fails_alone(tmp_path):
    commits: list[int] = []
    log = InteractionLog.open(tmp_path / "log.sqlite", on_commit=lambda n, s: commits.append(n))
    try:
        log.record(row("dup")).result(10)
        futures, lock = [], threading.Lock()

        def client(k):
            for i in range(25):
                f = log.record(row(f"{k}-{i}"))
                with lock:
                    futures.append(f)
                f.result(10)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        bad = log.record(row("dup"))  # the same response id again: a primary-key violation
        for t in threads:
            t.join()
        with pytest.raises(Exception):
            bad.result(10)
        assert all(f.exception() is None for f in futures)
        assert log.count() == 1 + 8 * 25
        assert max(commits) > 1  # while one transaction committed, the next gathered several writes
    finally:
        log.close()


def test_tool_trace_pairs_calls_with_their_results():
    text = ('<tool_call>{"name":"calculator","arguments":{"expression":"2+3"}}</tool_call>'
            '<tool_response>5</tool_response>it is 5<tool_call>{broken</tool_call>')
    trace = tool_trace(text)
    assert trace[0] == {"name": "calculator", "arguments": {"expression": "2+3"}, "result": "5"}
    assert trace[1]["name"] is None and "JSON" in trace[1]["error"] and trace[1]["result"] is None
    assert tool_trace("no calls") == []


def test_bad_targets_are_one_line_errors(tmp_path):
    with pytest.raises(ForgeError, match="directory"):
        InteractionLog.open(tmp_path)
    with pytest.raises(ForgeError, match="unknown interaction log"):
        InteractionLog.open("mysql://localhost/x")
