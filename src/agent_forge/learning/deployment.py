"""Where a deployed agent lives: the run or version store `learn` and `rollback` act on, and its lock.

`open_deployment(target)` accepts a run directory (or a run name under `runs/`) or a version store:
* a run deploys through `<run>/deploy/` (`interactions.run_store`); the first `learn` creates it with the run's
  agent (what `agent-forge serve RUN` served: the package bundle or the last stage's model) copied as version
  `v0`; its log is `<run>/interactions.sqlite` and its `facts` world the run's seed;
* a version store is used as it is; its log is `<store>/interactions.sqlite`.
Anything else is a one-line `ForgeError`.

Versions are immutable: a version folder is published whole (built under `.resume/learn/`, then renamed into
`versions/`) and its files are made read-only; only the pointer moves. `next_version` is `v<N+1>` over the
existing `v<N>` names. `folder_digest` hashes every file of a version (names and bytes), which is how the tests
check that a rollback restores a version byte for byte. `DeploymentLock` (an `flock` on `<home>/.learn.lock`)
keeps two `learn`/`rollback` processes apart; the kernel drops it when its holder dies, even by SIGKILL.

Exercise: `pytest tests/learning/test_learn_cli.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path


from ..errors import ForgeError
from ..interactions import LOG_FILE, current_version, is_store, run_store, set_current
from ..interactions.versions import VERSIONS, run_seed
from ..utils import fsync_tree

MANIFEST = "manifest.json"
AGENT_KEYS = ("agent", "model")  # as `serve`: the package stage's bundle, else a stage's model

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@dataclass(frozen=True)
class Deployment:
    home: Path  # the run directory, or the store itself
    store: Path
    log_path: Path
    facts_world: int | None
    run_dir: Path | None

    @property
    def scratch(self) -> Path:
        return self.home / ".resume" / "learn"


def open_deployment(target: str) -> Deployment:
    path = Path(target).expanduser()
    if not path.exists() and (Path("runs") / target / MANIFEST).is_file():
        path = Path("runs") / target
    if not path.exists():
        raise ForgeError(f"unknown run {target}: give a run directory (or a run name under runs/) or a version store")
    path = path.resolve()
    if (path / MANIFEST).is_file():
        return Deployment(path, run_store(path), path / LOG_FILE, run_seed(path), path)
    if is_store(path):
        return Deployment(path, path, path / LOG_FILE, None, None)
    raise ForgeError(f"{target} is neither a run directory ({MANIFEST}) nor a version store (CURRENT)")


def ensure_store(dep: Deployment) -> str:
    """The store's current version, creating the store from the run's agent (as `v0`) the first time."""
    if is_store(dep.store):
        return current_version(dep.store)[0]
    agent = run_agent(dep.run_dir)
    staging = dep.scratch / "v0"
    if staging.exists():
        _remove(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(agent, staging)
    publish(staging, dep.store / VERSIONS / "v0")
    set_current(dep.store, "v0", "init", f"the run's agent {agent}")
    return "v0"


def run_agent(run_dir: Path) -> Path:
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
        records = list(manifest["stages"].items())
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ForgeError(f"{run_dir / MANIFEST} is unreadable ({type(exc).__name__}: {exc})") from None
    for stage, record in reversed(records):
        outputs = (record or {}).get("outputs") or {} if isinstance(record, dict) else {}
        key = next((k for k in AGENT_KEYS if k in outputs), None)
        if record.get("status") == "done" and key is not None:
            recorded = Path(outputs[key])
            found = recorded if recorded.is_absolute() else run_dir / recorded
            if not found.exists():
                raise ForgeError(f"run {run_dir}: the {stage} stage's {key} {found} is missing")
            return found
    raise ForgeError(f"run {run_dir} has no finished stage with a model to deploy")


def version_names(store: Path) -> list[str]:
    folder = store / VERSIONS
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def next_version(store: Path) -> str:
    numbers = [int(n[1:]) for n in version_names(store) if n[:1] == "v" and n[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def publish(staging: Path, final: Path) -> None:
    """Make `staging` read-only and rename it to `final` (which must not exist: versions are immutable)."""
    if final.exists():
        raise ForgeError(f"version {final.name} already exists in {final.parent}; versions are never overwritten")
    for file in staging.rglob("*"):
        if file.is_file():
            file.chmod(file.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    fsync_tree(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _remove(path: Path) -> None:
    for file in path.rglob("*"):  # our own read-only staging copy
        if file.is_file():
            file.chmod(file.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(path)


def remove_tree(path: Path) -> None:
    if path.exists():
        _remove(path)


class DeploymentLock:
    """Exclusive lock of a deployment for one `learn` or `rollback`; ForgeError when another process holds it."""

    def __init__(self, home: Path):
        self.path = Path(home) / ".learn.lock"
        self._fd: int | None = None

    def __enter__(self) -> "DeploymentLock":
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._fd)
                self._fd = None
                raise ForgeError(f"another learn or rollback is running on {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
