"""The version watch: follow a version store's `CURRENT` pointer and swap the served agent when it moves.

`VersionWatch(state, store, interval_s)` polls `<store>/CURRENT` (`interactions.current_version`) every
`interval_s` seconds in a thread. When it names another version than the one served (a promotion by
`agent-forge learn`, or `agent-forge rollback`), the watch loads that version with `load_agent` in its own
thread, while the old version keeps answering, and then calls `state.swap`: requests in flight finish on the old
engine, new ones go to the new one, none is dropped. A pointer that is briefly unreadable or names a missing
folder is logged once and retried; a version that fails to load is logged and not retried until the pointer
moves again. Outside a store (`agent-forge serve runs/NAME` before the first `learn`), the store may appear
later; the watch picks it up then.

Exercise: `pytest -m slow tests/learning/test_deployment.py -k simulation`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..errors import ForgeError
from ..interactions import current_version, is_store
from ..models import load_agent

log = logging.getLogger("agent_forge.serve")


class VersionWatch:
    def __init__(self, state, store: str | Path, interval_s: float = 1.0):
        self.state = state
        self.store = Path(store)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._failed: str | None = None  # the version that failed to load (not retried until CURRENT moves)
        self._complained: str | None = None
        self._thread = threading.Thread(target=self._run, name="agent-forge-versions", daemon=True)

    def start(self) -> "VersionWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # the watch must outlive any one bad version
                log.error("version watch: %s: %s", type(exc).__name__, exc)

    def check(self) -> bool:
        """Swap if the pointer names another version than the served one; True if it swapped."""
        if not is_store(self.store):
            return False
        try:
            name, folder = current_version(self.store)
        except ForgeError as exc:
            if self._complained != str(exc):
                self._complained = str(exc)
                log.warning("version watch: %s (still serving %s)", exc, self.state.model_version)
            return False
        if name == self.state.model_version or name == self._failed:
            return False
        try:
            agent = load_agent(folder, device=self.state.settings.device, dtype=self.state.settings.dtype)
        except Exception as exc:
            self._failed = name
            log.error("cannot load version %s (%s); still serving %s", name, exc, self.state.model_version)
            return False
        if self._stop.is_set():
            return False
        self._failed = None
        self.state.swap(agent, name)
        return True
