"""Enabled tools as an agent extension: `tools.json` beside the model names them.

    {"format": 1, "tools": ["calculator"], "max_calls": 4, "memory": null}

`load_agent` restores it as `agent.extensions["tools"]`, a `tools.ToolUse` (the answer hook that executes calls
in the generation loop); `save_agent` writes it back. Only built-in tools (`tools.BUILTIN`) can be named; a user
tool is added to `agent.extensions["tools"].registry` in code. `memory` is the path of the memory store the
memory tools open (relative paths are taken from the agent folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ForgeError
from ...utils import atomic_write_text

FILE = "tools.json"


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
        except (ValueError, KeyError, TypeError) as error:
            raise ForgeError(f"{path} is not a valid tools file ({error})") from None
        if memory is not None and not Path(memory).is_absolute():
            memory = str(Path(folder) / memory)
        try:
            registry = builtin_registry(names, memory_path=memory)
        except (ValueError, ImportError) as error:
            raise ForgeError(f"{path}: {error}") from None
        agent.extensions[self.name] = ToolUse(registry, max_calls=max_calls, memory_path=memory)

    def prepare_save(self, agent) -> None:
        return None

    def write(self, agent, folder: Path) -> None:
        use = agent.extensions.get(self.name)
        if use is None:
            return
        from ...tools import BUILTIN

        names = [n for n in use.registry.names if n in BUILTIN]
        spec = {"format": 1, "tools": names, "max_calls": use.max_calls, "memory": use.memory_path}
        atomic_write_text(Path(folder) / FILE, json.dumps(spec, indent=2) + "\n")
