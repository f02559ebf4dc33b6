"""The one writer of the interaction log, with group commit.

Every write (an interaction row, feedback, a canary run, pruning) goes through one thread that owns the
writing connection. A request hands its statements over and gets a `concurrent.futures.Future` that resolves
once they are committed; the server awaits it before the response's last byte, so an answer a client received
always has its row, even if the server is killed right after.

Group commit: while one transaction commits (the fsync is the cost), the statements that arrive queue up, and
the next transaction takes all of them at once, so under load many rows share one fsync and the per-request
cost stays flat. If a batch fails, its writes are retried one transaction each, so one bad row fails only its
own request. `maintenance(execute)` (retention) runs in its own transaction every `maintenance_every_s`.

Exercise: `pytest tests/interactions/test_log.py`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

log = logging.getLogger("agent_forge.interactions")

Statement = tuple[str, tuple]
MAX_GROUP = 512  # writes per transaction at most (bounds the time one commit holds the lock)


class _Write:
    __slots__ = ("statements", "future")

    def __init__(self, statements: Sequence[Statement]):
        self.statements = list(statements)
        self.future: Future = Future()


class GroupCommitWriter:
    def __init__(self, backend, *, maintenance: Callable[[Any], None] | None = None, maintenance_every_s: float = 60.0,
                 on_commit: Callable[[int, float], None] | None = None):
        self.backend = backend
        self.maintenance = maintenance
        self.maintenance_every_s = maintenance_every_s
        self.on_commit = on_commit  # (writes in the transaction, seconds it took)
        self._queue: queue.Queue[_Write | None] = queue.Queue()
        self._conn = backend.connect()  # opened here: a wrong path or URL is an error at start, not later
        self._last_maintenance = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="agent-forge-log-writer", daemon=True)
        self._thread.start()

    def submit(self, statements: Sequence[Statement]) -> Future:
        """Queue writes for the next transaction; the future resolves (None) once they are committed."""
        write = _Write(statements)
        if self._closed:
            write.future.set_exception(RuntimeError("the interaction log is closed"))
            return write.future
        self._queue.put(write)
        return write.future

    def maintain(self) -> Future:
        """Run the maintenance (retention) now, in the writer thread; resolves when done."""
        write = _Write([])
        write.statements = None  # type: ignore[assignment]  # marks a maintenance request
        self._queue.put(write)
        return write.future

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    # ---------------------------------------------------------------------------------------------- thread

    def _run(self) -> None:
        try:
            while True:
                timeout = max(0.05, self._last_maintenance + self.maintenance_every_s - time.monotonic())
                try:
                    first = self._queue.get(timeout=timeout if self.maintenance else None)
                except queue.Empty:
                    self._maintain()
                    continue
                group, stop = [first], first is None
                while not stop and len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    group.append(item)
                    stop = item is None
                writes = [w for w in group if w is not None and w.statements is not None]
                if writes:
                    self._commit(writes)
                forced = [w for w in group if w is not None and w.statements is None]
                if forced or (self.maintenance and time.monotonic() - self._last_maintenance >= self.maintenance_every_s):
                    self._maintain(forced)
                if stop:
                    break
        finally:
            for write in self._drain():
                write.future.set_exception(RuntimeError("the interaction log is closed"))
            try:
                self._conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass

    def _drain(self) -> list[_Write]:
        left = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            if item is not None:
                left.append(item)

    def _commit(self, writes: list[_Write]) -> None:
        start = time.perf_counter()
        try:
            self._execute([s for w in writes for s in w.statements])
        except Exception:
            if len(writes) == 1:
                self._fail(writes[0])
                return
            for write in writes:  # find the bad one(s): each write in its own transaction
                try:
                    self._execute(write.statements)
                except Exception:
                    self._fail(write)
                else:
                    write.future.set_result(None)
            return
        if self.on_commit is not None:
            self.on_commit(len(writes), time.perf_counter() - start)
        for write in writes:
            write.future.set_result(None)

    def _execute(self, statements: list[Statement]) -> None:
        try:
            with self.backend.transaction(self._conn) as cursor:
                for sql, params in statements:
                    cursor.execute(self.backend.sql(sql), params)
        except Exception:
            self._reconnect_if_broken()
            raise

    def _fail(self, write: _Write) -> None:
        import sys

        exc = sys.exc_info()[1] or RuntimeError("write failed")
        log.error("interaction log write failed: %s", exc)
        write.future.set_exception(exc)

    def _reconnect_if_broken(self) -> None:
        if getattr(self._conn, "closed", False) or getattr(self._conn, "broken", False):
            try:
                self._conn = self.backend.connect()
            except Exception as exc:  # the database is down: the next write retries
                log.error("cannot reconnect to the interaction log: %s", exc)

    def _maintain(self, forced: list[_Write] = ()) -> None:
        self._last_maintenance = time.monotonic()
        try:
            if self.maintenance is not None:
                with self.backend.transaction(self._conn) as cursor:
                    self.maintenance(lambda sql, params=(): cursor.execute(self.backend.sql(sql), params))
        except Exception as exc:
            log.error("interaction log maintenance failed: %s", exc)
            self._reconnect_if_broken()
            for write in forced:
                write.future.set_exception(exc)
            return
        for write in forced:
            write.future.set_result(None)
