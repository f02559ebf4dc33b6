"""Tools the model may call: a registry of typed Python functions and the call executor that never raises.

A tool is a Python function with type hints and a Google-style docstring (an `Args:` line per parameter); its
JSON schema comes from `transformers.utils.get_json_schema`, as for chat templates. `ToolRegistry.execute`
checks a parsed call against the schema (known tool, required arguments present, no unknown ones, JSON types
right), runs the function with a wall-time limit and returns its result as text; every failure, including the
tool raising, becomes a tool error string for the model.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .calls import CallError, ToolCall, parse_call_body, tool_error

MAX_RESULT_CHARS = 2000
DEFAULT_TIMEOUT_S = 2.0

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable[..., Any]
    schema: dict[str, Any]  # {"name", "description", "parameters"} as get_json_schema gives it (the "function" part)

    @property
    def openai(self) -> dict[str, Any]:
        """The OpenAI tool definition: {"type": "function", "function": schema}."""
        return {"type": "function", "function": self.schema}


def _type_ok(value: Any, spec: dict[str, Any]) -> bool:
    kinds = spec.get("type")
    if kinds is None:
        return True
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(_JSON_TYPES.get(kind, lambda v: True)(value) for kind in kinds)


class ToolRegistry:
    """Named tools; `add(function)` registers one, `execute(call)` runs a call and returns text (never raises)."""

    def __init__(self, tools: Iterable[Callable[..., Any]] = (), *, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.tools: dict[str, Tool] = {}
        self.timeout_s = timeout_s
        for function in tools:
            self.add(function)

    def add(self, function: Callable[..., Any], *, name: str | None = None) -> Tool:
        """Register a typed, documented function (its JSON schema from its signature and docstring)."""
        from transformers.utils import get_json_schema

        schema = dict(get_json_schema(function)["function"])
        if name is not None:
            schema["name"] = name
        tool = Tool(schema["name"], function, schema)
        self.tools[tool.name] = tool
        return tool

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    @property
    def names(self) -> list[str]:
        return sorted(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool definitions of every registered tool (what a chat template's `tools=` takes)."""
        return [self.tools[name].openai for name in self.names]

    def validate(self, call: ToolCall) -> str | None:
        """Why `call` cannot run (unknown tool, missing/unknown/mistyped argument), or None."""
        tool = self.tools.get(call.name)
        if tool is None:
            return f"unknown tool {call.name[:40]!r}; available: {', '.join(self.names) or 'none'}"
        parameters = tool.schema.get("parameters", {})
        properties = parameters.get("properties", {})
        for required in parameters.get("required", []):
            if required not in call.arguments:
                return f"{tool.name}: missing argument {required!r}"
        for key, value in call.arguments.items():
            if key not in properties:
                return f"{tool.name}: unknown argument {str(key)[:40]!r}"
            if not _type_ok(value, properties[key]):
                return f"{tool.name}: argument {key!r} must be {properties[key].get('type')}"
        return None

    def execute(self, call: ToolCall | CallError | str) -> str:
        """The call's result as text, or a tool error string. Never raises; bounded by `timeout_s`."""
        try:
            if isinstance(call, str):
                call = parse_call_body(call)
            if isinstance(call, CallError):
                return tool_error(call.message)
            if not isinstance(call, ToolCall):
                return tool_error("not a tool call")
            problem = self.validate(call)
            if problem:
                return tool_error(problem)
            return self._run(self.tools[call.name], call.arguments)
        except Exception as error:  # pragma: no cover - the executor never raises
            return tool_error(f"{type(error).__name__}: {error}")

    def _run(self, tool: Tool, arguments: dict[str, Any]) -> str:
        outcome: dict[str, Any] = {}

        def target():
            try:
                outcome["value"] = tool.function(**arguments)
            except BaseException as error:  # noqa: BLE001 - reported to the model
                outcome["error"] = error

        worker = threading.Thread(target=target, name=f"tool-{tool.name}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            return tool_error(f"{tool.name}: time limit of {self.timeout_s:g} s exceeded")
        if "error" in outcome:
            error = outcome["error"]
            message = str(error) or type(error).__name__
            return tool_error(f"{tool.name}: {message}")
        value = outcome.get("value")
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return text[:MAX_RESULT_CHARS]


BUILTIN = ("calculator", "memory_search", "memory_write")


def default_registry() -> ToolRegistry:
    """The built-in tools: the calculator (memory tools are added by `agent_forge.memory.register_memory_tools`)."""
    from .calculator import calculator

    return ToolRegistry([calculator])


def builtin_registry(names, *, memory_path=None, memory_k: int = 5) -> ToolRegistry:
    """A registry of the named built-in tools (`BUILTIN`); memory tools open the store at `memory_path`.

    ValueError for an unknown name or for memory tools without a store path.
    """
    names = list(names)
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise ValueError(f"unknown built-in tool(s) {', '.join(unknown)}; known: {', '.join(BUILTIN)}")
    registry = ToolRegistry()
    if "calculator" in names:
        from .calculator import calculator

        registry.add(calculator)
    memory_names = [n for n in names if n.startswith("memory_")]
    if memory_names:
        if memory_path is None:
            raise ValueError("memory tools need a memory store path")
        from ..memory import MemoryStore, register_memory_tools

        # an agent that only searches opens its memory read-only: the snapshot in its folder stays byte for byte
        store = MemoryStore(memory_path, read_only="memory_write" not in memory_names)
        register_memory_tools(registry, store, names=memory_names, default_k=memory_k)
    return registry
