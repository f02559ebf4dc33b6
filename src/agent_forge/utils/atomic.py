"""Crash-safe writes: a file or a directory is either absent, the old version, or complete — never half-written.

Files are written to a temporary sibling, flushed and fsync'ed, then moved over the target with `os.replace`
(atomic on POSIX and Windows). Directories are built in `<dir>.tmp-<pid>` and renamed into place when
complete. A process killed mid-write leaves only `*.tmp-*` siblings behind; `remove_stale_temp` deletes them
(the pipeline calls it on `--resume`).

Exercise: `python -m pytest tests/pipeline/test_atomic_io.py`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

# `<name>.tmp-<pid>` (directories) or `<name>.tmp-<pid>-<random>` (files); `<name>.old-<pid>` is a directory
# moved aside while its replacement is renamed in.
_TEMP_NAME = re.compile(r"\.(tmp|old)-\d+(-[0-9a-f]+)?$")


def is_temp_name(name: str) -> bool:
    """True for names this module gives to in-progress or moved-aside files and directories."""
    return _TEMP_NAME.search(name) is not None


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename is durable only once its parent directory is synced)."""
    if os.name != "posix":
        return  # Windows cannot open directories; NTFS journals renames itself
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root`, so that a finished output survives a power loss too."""
    root = Path(root)
    if root.is_file():
        _fsync_file(root)
        return
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new one, never a prefix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any, *, indent: int = 2) -> None:
    """Atomically write `obj` as JSON; serialisation happens before the file is touched."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True) + "\n")


def atomic_write_yaml(path: Path | str, obj: Any) -> None:
    """Atomically write `obj` as block-style YAML, keeping the mapping order."""
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True))


def temp_dir_for(final: Path | str) -> Path:
    """The in-progress name of directory `final` for this process: `<final>.tmp-<pid>`."""
    final = Path(final)
    return final.with_name(f"{final.name}.tmp-{os.getpid()}")


def publish_directory(temp: Path | str, final: Path | str) -> Path:
    """Move the complete directory `temp` to `final`, replacing an existing `final`.

    POSIX cannot rename over a non-empty directory, so an existing `final` is first moved aside to
    `<final>.old-<pid>`; a crash in between leaves the old version there, which `remove_stale_temp` deletes.
    """
    temp, final = Path(temp), Path(final)
    fsync_tree(temp)
    aside = None
    if final.exists():
        aside = final.with_name(f"{final.name}.old-{os.getpid()}")
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(final, aside)
    os.replace(temp, final)
    fsync_dir(final.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return final


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Build a directory under a temporary name and publish it as `final` only if the block succeeds.

    >>> with atomic_directory(run / "model") as tmp:   # doctest: +SKIP
    ...     (tmp / "config.json").write_text("{}")
    """
    final = Path(final)
    temp = temp_dir_for(final)
    if temp.exists():  # left by an earlier process that had our (recycled) pid
        shutil.rmtree(temp)
    temp.mkdir(parents=True)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    publish_directory(temp, final)


def remove_stale_temp(root: Path | str) -> list[Path]:
    """Delete every leftover temporary file/directory under `root` (recursively); return what was removed.

    A directory moved aside by `publish_directory` whose replacement never arrived is renamed back instead.
    Only call this while no other process writes under `root` (the pipeline holds the run lock).
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            match = _TEMP_NAME.search(name)
            original = Path(dirpath) / name[: match.start()] if match else None
            if match and match.group(1) == "old" and not original.exists():
                # crashed between moving the old version aside and renaming the new one in: keep the old one
                os.replace(Path(dirpath) / name, original)
                dirnames.remove(name)
                continue
            if is_temp_name(name):
                shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
                removed.append(Path(dirpath) / name)
                dirnames.remove(name)  # do not descend into what was just deleted
        for name in filenames:
            if is_temp_name(name):
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed.append(Path(dirpath) / name)
    return removed
