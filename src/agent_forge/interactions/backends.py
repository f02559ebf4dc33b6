"""Where the interaction log lives: SQLite (the default, a file) or PostgreSQL (`--log-url postgresql://...`).

Both speak the same SQL here (the schema is portable: TEXT, INTEGER, DOUBLE PRECISION, `IF NOT EXISTS`); a
backend opens connections, runs a transaction its own way and converts the `?` placeholders:

* `SQLiteBackend(path)`: WAL mode (readers never wait for the writer), `synchronous=NORMAL` by default (a
  committed row is in the WAL file and survives a killed server or a crashed process; only a power cut or a
  kernel crash can lose the last transactions), `FULL` on request (an fsync per commit: survives a power cut,
  at about 4 ms a commit on this project's virtual disk), and `BEGIN IMMEDIATE` so the one writer takes the
  lock at the start of its transaction;
* `PostgresBackend(url)`: psycopg 3 (the `postgres` extra), autocommit connections with explicit
  transactions; the password never appears in messages (`describe()`).

`open_backend(target)` picks one from a path or a URL. Exercise: `pytest tests/interactions`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import ForgeError

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path).expanduser()
        if synchronous.upper() not in SYNCHRONOUS:
            raise ForgeError(f"unknown SQLite synchronous mode {synchronous!r}; expected one of {list(SYNCHRONOUS)}")
        self.synchronous = synchronous.upper()
        if self.path.is_dir():
            raise ForgeError(f"the interaction log {self.path} is a directory; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ForgeError(f"cannot create the folder of the interaction log {self.path}: {exc.strerror}") from None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def connect(self):
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise ForgeError(f"cannot open the interaction log {self.path}: {exc}") from None
        return conn

    @contextmanager
    def transaction(self, conn) -> Iterator[Any]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.cursor()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def sql(self, statement: str) -> str:
        return statement

    def read(self, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)  # a reader of its own: WAL lets it run
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(statement, params).fetchall()]
        finally:
            conn.close()

    def close(self) -> None:
        pass


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ForgeError("--log-url postgresql://... needs psycopg: pip install 'agent-forge[postgres]'") from None
        self.url = url
        self._reader = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.url)

    def connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ForgeError(f"cannot connect to {self.describe()}: {str(exc).strip().splitlines()[0]}") from None

    @contextmanager
    def transaction(self, conn) -> Iterator[Any]:
        with conn.transaction():
            with conn.cursor() as cursor:
                yield cursor

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")  # the statements here have no literal question marks

    def read(self, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self._lock:  # one reading connection, shared by the server's threads one at a time
            if self._reader is None or self._reader.closed:
                self._reader = self.connect()
            try:
                with self._reader.cursor(row_factory=dict_row) as cursor:
                    cursor.execute(self.sql(statement), params)
                    return list(cursor.fetchall())
            except Exception:
                self._reader.close()
                self._reader = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


def open_backend(target: str | Path, *, synchronous: str = "NORMAL"):
    """A backend for a SQLite path (or `sqlite:///path`) or a `postgresql://` / `postgres://` URL."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(text)
    if "://" in text and not text.startswith("sqlite:///"):
        raise ForgeError(f"unknown interaction log {text!r}: give a file path or a postgresql:// URL")
    return SQLiteBackend(text.removeprefix("sqlite://"), synchronous)
