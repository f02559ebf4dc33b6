"""The interaction log: what the server writes (through the group-commit writer) and what it reads back.

    log = InteractionLog.open("runs/tiny/interactions.sqlite", retention=Retention(days=30, rows=1_000_000),
                              redactor=Redactor(["sk-secret"]))
    log.record(interaction).result()      # committed once the future resolves
    log.get(response_id)                  # the row as a dict (JSON fields decoded), or None

Tables: `interactions` (one row per answered request, keyed by the response id the client got), `feedback`
(rows linked to a response id), `canary_runs` (the drift watch's results), `log_meta` (the schema version).
Every text is redacted before it is queued. Retention (`Retention(days, rows)`) runs in the writer: rows older
than `days` and all but the newest `rows` interactions are deleted, with their feedback.

Exercise: `pytest tests/interactions/test_log.py`.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ForgeError
from .backends import open_backend
from .records import CanaryRun, Feedback, Interaction
from .redact import Redactor
from .writer import GroupCommitWriter

SCHEMA_VERSION = "1"
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS interactions (
        response_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model TEXT, model_version TEXT, status INTEGER,
        prompt TEXT, answer TEXT, thoughts TEXT, tool_calls TEXT, expert TEXT, confidence DOUBLE PRECISION,
        latency_ms DOUBLE PRECISION, ttft_ms DOUBLE PRECISION, prompt_tokens INTEGER, completion_tokens INTEGER,
        finish_reason TEXT, domain TEXT, reference TEXT, verified DOUBLE PRECISION, choices TEXT, conversation TEXT,
        error TEXT,
        created DOUBLE PRECISION NOT NULL, tool_names TEXT)""",
    "CREATE INDEX IF NOT EXISTS interactions_created ON interactions (created)",
    """CREATE TABLE IF NOT EXISTS feedback (
        feedback_id TEXT PRIMARY KEY, response_id TEXT NOT NULL, rating INTEGER, correction TEXT, comment TEXT,
        correction_verified DOUBLE PRECISION, created DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feedback_response ON feedback (response_id)",
    """CREATE TABLE IF NOT EXISTS canary_runs (
        run_id TEXT PRIMARY KEY, model_version TEXT, trigger TEXT, accuracy DOUBLE PRECISION, n INTEGER,
        by_domain TEXT, reference DOUBLE PRECISION, falling INTEGER, created DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS canary_created ON canary_runs (created)",
    "CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT)",
]
# columns the dashboard reads (never the texts: the page shows aggregates only)
DASHBOARD_COLUMNS = ("created", "endpoint", "model_version", "status", "latency_ms", "ttft_ms", "confidence",
                     "verified", "domain", "tool_names", "expert", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class Retention:
    days: float | None = None  # delete interactions older than this
    rows: int | None = None  # keep at most this many interactions (the newest)

    def __post_init__(self) -> None:
        if self.days is not None and self.days <= 0:
            raise ForgeError(f"--retention-days must be positive, got {self.days:g}")
        if self.rows is not None and self.rows < 1:
            raise ForgeError(f"--retention-rows must be at least 1, got {self.rows}")


def _insert(table: str, row: dict[str, Any]) -> tuple[str, tuple]:
    names = list(row)
    return (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            tuple(row[n] for n in names))


class InteractionLog:
    def __init__(self, backend, *, retention: Retention = Retention(), redactor: Redactor | None = None,
                 maintenance_every_s: float = 30.0, on_commit: Callable[[int, float], None] | None = None):
        self.backend = backend
        self.retention = retention
        self.redactor = redactor or Redactor()
        self._create_schema()
        self.writer = GroupCommitWriter(backend, maintenance=self._prune if (retention.days or retention.rows) else None,
                                        maintenance_every_s=maintenance_every_s, on_commit=on_commit)

    @classmethod
    def open(cls, target: str | Path, *, synchronous: str = "NORMAL", **options) -> "InteractionLog":
        return cls(open_backend(target, synchronous=synchronous), **options)

    def describe(self) -> str:
        return self.backend.describe()

    def _create_schema(self) -> None:
        conn = self.backend.connect()
        try:
            with self.backend.transaction(conn) as cursor:
                for statement in SCHEMA:
                    cursor.execute(statement)
            found = self.backend.read("SELECT value FROM log_meta WHERE key = 'schema'")
            if not found:
                with self.backend.transaction(conn) as cursor:
                    cursor.execute(self.backend.sql("INSERT INTO log_meta (key, value) VALUES ('schema', ?)"),
                                   (SCHEMA_VERSION,))
            elif found[0]["value"] != SCHEMA_VERSION:
                raise ForgeError(f"{self.describe()} has interaction-log schema {found[0]['value']}; this version "
                                 f"writes schema {SCHEMA_VERSION}")
        except ForgeError:
            raise
        except Exception as exc:
            raise ForgeError(f"cannot prepare the interaction log {self.describe()}: {exc}") from None
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------------ writes

    def record(self, interaction: Interaction) -> Future:
        r = self.redactor
        for name in ("prompt", "answer", "error", "reference"):
            setattr(interaction, name, r.text(getattr(interaction, name)))
        for name in Interaction.JSON_FIELDS:
            setattr(interaction, name, r.deep(getattr(interaction, name)))
        return self.writer.submit([_insert("interactions", interaction.row())])

    def add_feedback(self, feedback: Feedback) -> Future:
        feedback.correction = self.redactor.text(feedback.correction)
        feedback.comment = self.redactor.text(feedback.comment)
        return self.writer.submit([_insert("feedback", feedback.row())])

    def add_canary(self, run: CanaryRun) -> Future:
        return self.writer.submit([_insert("canary_runs", run.row())])

    def prune(self) -> Future:
        """Apply the retention limits now (they also apply at start and every `maintenance_every_s`)."""
        return self.writer.maintain()

    def _prune(self, execute) -> None:
        if self.retention.days:
            cutoff = time.time() - self.retention.days * 86400
            execute("DELETE FROM interactions WHERE created < ?", (cutoff,))
            execute("DELETE FROM canary_runs WHERE created < ?", (cutoff,))
        if self.retention.rows:
            # the newest `rows` stay: everything at or before the first row beyond them goes
            execute("DELETE FROM interactions WHERE created <= (SELECT created FROM interactions "
                    "ORDER BY created DESC LIMIT 1 OFFSET ?)", (self.retention.rows,))
        execute("DELETE FROM feedback WHERE NOT EXISTS "
                "(SELECT 1 FROM interactions i WHERE i.response_id = feedback.response_id)")

    def close(self) -> None:
        self.writer.close()
        self.backend.close()

    # ------------------------------------------------------------------------------------------------- reads

    def get(self, response_id: str) -> dict[str, Any] | None:
        rows = self.backend.read("SELECT * FROM interactions WHERE response_id = ?", (response_id,))
        if not rows:
            return None
        row = rows[0]
        for name in Interaction.JSON_FIELDS:
            row[name] = json.loads(row[name]) if row.get(name) else []
        return row

    def exists(self, response_id: str) -> bool:
        return bool(self.backend.read("SELECT 1 AS found FROM interactions WHERE response_id = ?", (response_id,)))

    def feedback_of(self, response_id: str) -> list[dict[str, Any]]:
        return self.backend.read("SELECT * FROM feedback WHERE response_id = ? ORDER BY created", (response_id,))

    def count(self, table: str = "interactions") -> int:
        if table not in ("interactions", "feedback", "canary_runs"):
            raise ValueError(table)
        return int(self.backend.read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])

    def response_ids(self) -> set[str]:
        return {r["response_id"] for r in self.backend.read("SELECT response_id FROM interactions")}

    def recent(self, since: float, limit: int = 20000) -> list[dict[str, Any]]:
        """The newest interactions since `since` (unix time), dashboard columns only, oldest first."""
        rows = self.backend.read(f"SELECT {', '.join(DASHBOARD_COLUMNS)} FROM interactions WHERE created >= ? "
                                 "ORDER BY created DESC LIMIT ?", (since, limit))
        return rows[::-1]

    def recent_feedback(self, since: float, limit: int = 20000) -> list[dict[str, Any]]:
        return self.backend.read("SELECT f.created AS created, f.rating AS rating, f.correction_verified AS "
                                 "correction_verified, i.model_version AS model_version, "
                                 "CASE WHEN f.correction IS NULL THEN 0 ELSE 1 END AS corrected "
                                 "FROM feedback f JOIN interactions i ON i.response_id = f.response_id "
                                 "WHERE f.created >= ? ORDER BY f.created LIMIT ?", (since, limit))

    def canary_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest canary runs, oldest first (`by_domain` decoded, `falling` a bool)."""
        rows = self.backend.read("SELECT * FROM canary_runs ORDER BY created DESC LIMIT ?", (limit,))[::-1]
        for row in rows:
            row["by_domain"] = json.loads(row["by_domain"] or "{}")
            row["falling"] = bool(row["falling"])
        return rows

    def answered(self) -> list[dict[str, Any]]:
        """Every answered (status 200) interaction, oldest first, with what a learner reads: the prompt, the
        answer, the recognised domain, reference and verifier score, the version that answered."""
        return self.backend.read(
            "SELECT response_id, endpoint, model_version, prompt, answer, domain, reference, verified, created "
            "FROM interactions WHERE status = 200 ORDER BY created, response_id")

    def all_feedback(self) -> list[dict[str, Any]]:
        """Every feedback row, oldest first."""
        return self.backend.read("SELECT response_id, rating, correction, correction_verified, created FROM feedback "
                                 "ORDER BY created, feedback_id")

    def versions(self) -> list[dict[str, Any]]:
        """Every model version the log has answered with: first and last seen, requests, verified accuracy."""
        return self.backend.read(
            "SELECT model_version, MIN(created) AS first_seen, MAX(created) AS last_seen, COUNT(*) AS requests, "
            "AVG(verified) AS verified_mean, COUNT(verified) AS verified_n FROM interactions "
            "GROUP BY model_version ORDER BY MIN(created)")
