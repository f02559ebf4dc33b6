"""Enabled tools as an agent extension: `tools.json` beside the model names them.

    {"format": 1, "tools": ["calculator"], "max_calls": 4, "memory": null, "memory_k": 5}

`load_agent` restores it as `agent.extensions["tools"]`, a `tools.ToolUse` (the answer hook that executes calls
in the generation loop); `save_agent` writes it back. Only built-in tools (`tools.BUILTIN`) can be named; a user
tool is added to `agent.extensions["tools"].registry` in code. `memory` is the path of the memory store the
memory tools open (relative paths are taken from the agent folder). `save_agent` snapshots a store that lies
outside the folder into `memory.db` beside the model (SQLite's online backup: a consistent copy even while
another process writes), so the saved agent carries its memory.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ForgeError
from ...utils import atomic_write_text

FILE = "tools.json"
MEMORY_FILE = "memory.db"


class ToolsExtension:
    name = "tools"

    def restore(self, agent, folder: Path) -> None:
        path = Path(folder) / FILE
        if not path.is_file():
            return
        from ...tools import ToolUse, builtin_registry

        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            names = list(spec["tools"])
            max_calls = int(spec.get("max_calls", 4))
            memory = spec.get("memory")
            memory_k = int(spec.get("memory_k", 5))
        except (ValueError, KeyError, TypeError) as error:
            raise ForgeError(f"{path} is not a valid tools file ({error})") from None
        if memory is not None and not Path(memory).is_absolute():
            memory = str(Path(folder) / memory)
        try:
            registry = builtin_registry(names, memory_path=memory, memory_k=memory_k)
        except (ValueError, ImportError) as error:
            raise ForgeError(f"{path}: {error}") from None
        agent.extensions[self.name] = ToolUse(registry, max_calls=max_calls, memory_path=memory, memory_k=memory_k)

    def prepare_save(self, agent) -> None:
        return None

    def write(self, agent, folder: Path) -> None:
        use = agent.extensions.get(self.name)
        if use is None:
            return
        from ...tools import BUILTIN

        names = [n for n in use.registry.names if n in BUILTIN]
        memory = None
        if use.memory_path is not None:
            snapshot_store(Path(use.memory_path), Path(folder) / MEMORY_FILE)
            memory = MEMORY_FILE
        spec = {"format": 1, "tools": names, "max_calls": use.max_calls, "memory": memory, "memory_k": use.memory_k}
        atomic_write_text(Path(folder) / FILE, json.dumps(spec, indent=2) + "\n")


def snapshot_store(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite store at `source` (WAL included) as the single file `target`."""
    if source.resolve() == target.resolve():
        return
    if not source.is_file():
        raise ForgeError(f"the agent's memory store {source} does not exist")
    from ...memory.store import sqlite_module

    sqlite = sqlite_module()
    src, dst = sqlite.connect(str(source)), sqlite.connect(str(target))
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the agent folder
    finally:
        src.close()
        dst.close()
