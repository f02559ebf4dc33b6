"""One process at a time per run directory.

`RunLock` takes an exclusive `flock` on `<run>/.lock`. The kernel drops the lock when its holder dies, even by
SIGKILL, so a killed run never leaves a stale lock behind and `--resume` can start at once; a second live
process on the same run gets a clear error instead of two writers corrupting each other's stage. On systems
without `fcntl` (Windows) the lock is not enforced.

Exercise: `python -m pytest tests/pipeline/test_pipeline_runner.py -k lock`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ForgeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunLock:
    """Context manager holding the run directory's lock; ForgeError when another live process holds it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ForgeError(
                f"run {self.path.parent} is being written by another agent-forge process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_locked(run_dir: Path) -> bool:
    """True while some live process holds the run's lock (used to tell 'running' from 'interrupted')."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's own shared lock
    return False
