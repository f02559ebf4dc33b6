"""Model versions: which weights answered, and the folder/pointer layout a learner promotes into.

A *version store* is a folder:

    <store>/
      versions/<version>/    one agent folder per version (anything `load_agent` loads)
      CURRENT                the name of the version to serve (one line, replaced atomically)
      history.jsonl          one JSON line per change of CURRENT: {"time", "version", "event", "note"}

`agent-forge serve <store>` serves `versions/<CURRENT>` under that version's name, and the dashboard shows
`history.jsonl` beside the versions the log has seen. The learner (`agent-forge learn`, `agent_forge.learning`)
writes a new `versions/<name>/`, evaluates the canary on it, and calls `set_current(store, name, "promote")`;
a rollback is `set_current(store, previous, "rollback")`. `set_current` is the one writer of the pointer:
the history line is appended first, then CURRENT is replaced with `os.replace`, so a crash leaves either the
old or the new version current, never a torn pointer.

A pipeline run deploys through the store `<run>/deploy/` (`run_store`), created by the first `agent-forge learn`
with the run's agent as its first version; the run's interaction log `<run>/interactions.sqlite` (`LOG_FILE`)
stays where the server wrote it.

Outside a store, a served agent's version is `<folder name>@<12 hex digits>`: a digest of `bundle.json` (a
packaged agent names every file's sha256) or else of the folder's file names, sizes and modification times,
so a retrained model at the same path gets a new version.

Exercise: `pytest tests/interactions/test_versions.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from ..errors import ForgeError
from ..utils import atomic_write_text

VERSIONS = "versions"
CURRENT = "CURRENT"
HISTORY = "history.jsonl"
RUN_STORE = "deploy"  # a run directory's version store
LOG_FILE = "interactions.sqlite"  # the interaction log's default file in a run directory or a store
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_store(path: str | Path) -> bool:
    return (Path(path) / CURRENT).is_file()


def run_store(run_dir: str | Path) -> Path:
    """The version store a pipeline run deploys through (it exists once `agent-forge learn` made it)."""
    return Path(run_dir) / RUN_STORE


def current_version(store: str | Path) -> tuple[str, Path]:
    """(version name, its folder) that `store` points at; ForgeError if the pointer or the folder is broken."""
    store = Path(store)
    try:
        name = (store / CURRENT).read_text().strip()
    except OSError as exc:
        raise ForgeError(f"cannot read {store / CURRENT}: {exc.strerror}") from None
    if not _NAME.fullmatch(name):
        raise ForgeError(f"{store / CURRENT} names no valid version ({name[:40]!r})")
    folder = store / VERSIONS / name
    if not folder.exists():
        raise ForgeError(f"{store / CURRENT} points at {name}, but {folder} is missing")
    return name, folder


def set_current(store: str | Path, version: str, event: str, note: str = "") -> None:
    """Point `store` at `version` (which must exist) and record why (`event`: promote, rollback, ...)."""
    store = Path(store)
    if not _NAME.fullmatch(version or ""):
        raise ForgeError(f"invalid version name {version!r}: letters, digits, '.', '_' and '-' only")
    if not (store / VERSIONS / version).exists():
        raise ForgeError(f"no version {version} in {store / VERSIONS}")
    entry = {"time": time.time(), "version": version, "event": event, "note": note}
    with open(store / HISTORY, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    atomic_write_text(store / CURRENT, version + "\n")


def history(store: str | Path) -> list[dict[str, Any]]:
    """The store's history lines, oldest first (unreadable lines are skipped: the file is append-only)."""
    path = Path(store) / HISTORY
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def version_of(path: str | Path) -> str:
    """The version name of an agent folder or file: its store name, or `<name>@<digest>` (see the module doc)."""
    path = Path(path).resolve()
    if path.parent.name == VERSIONS and is_store(path.parent.parent):
        return path.name
    digest = hashlib.sha256()
    bundle = path / "bundle.json"
    if bundle.is_file():
        digest.update(bundle.read_bytes())
    elif path.is_file():
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return f"{path.name}@{digest.hexdigest()[:12]}"


def run_seed(run_dir: Path) -> int | None:
    """The seed in a run's `config.yaml` (it picks the facts world prompts are verified against), or None."""
    import yaml

    try:
        seed = (yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}).get("seed")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
