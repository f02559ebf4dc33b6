"""The config explained: every key with its type, default and description, from the pydantic models themselves.

- `config_fields()`: one `ConfigKey` per key of `ForgeConfig` (sections and values, dotted names, in order).
- `show_config(cfg)`: the resolved config as YAML, each key commented with its description and default
  (`agent-forge config show`); the text loads back as the same config.
- `reference_markdown()`: `docs/config.md` (`agent-forge config reference > docs/config.md`;
  `tests/config/test_config_reference.py` fails when the file is stale).

Light on purpose (pydantic and yaml only), like the rest of `agent_forge.config`.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .base import Section, absolute_path

_MISSING = object()


@dataclass(frozen=True)
class ConfigKey:
    """One key of the config: `key` dotted (`seed_stage.pretrain.steps`); a section has `section` set."""

    key: str
    type: str
    default: Any  # JSON-able; `_MISSING` for a section
    description: str
    section: type[Section] | None = None
    path: bool = False  # a UserPath: relative paths are resolved against the working directory
    execution: bool = False  # left out of the config hash

    @property
    def depth(self) -> int:
        return self.key.count(".")

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[-1]


def _is_path(annotation: Any, metadata: list) -> bool:
    if any(getattr(m, "func", None) is absolute_path for m in metadata):
        return True
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_path(typing.get_args(annotation)[0], list(annotation.__metadata__))
    return any(_is_path(arg, []) for arg in typing.get_args(annotation))


def _type_name(annotation: Any, metadata: list = ()) -> str:
    """A short readable type: `int`, `path`, `list of int`, `one of "ga", "cmaes"`, `mapping of str to path`."""
    if _is_path(annotation, list(metadata)) and typing.get_origin(annotation) in (None, typing.Annotated):
        return "path"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0], list(annotation.__metadata__))
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _declared_default(field: FieldInfo, value: Any, path: bool) -> Any:
    """The default as the user would write it: a path default as declared (not made absolute)."""
    if path and isinstance(field.default, str):
        return field.default
    return value


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def config_fields(model: Section | None = None, prefix: str = "", *, leaves_first: bool = False) -> Iterator[ConfigKey]:
    """Every key of `model` (default: the defaults of `ForgeConfig`), depth first, in declaration order.

    `leaves_first`: within each section its plain keys come before its subsections (the reference's order).
    """
    from . import EXECUTION_FIELDS, ForgeConfig

    model = ForgeConfig() if model is None else model
    leaves, sections = [], []
    for name, field in type(model).model_fields.items():
        key = f"{prefix}{name}"
        value = getattr(model, name)
        description = field.description or ""
        if isinstance(value, Section):
            doc = _first_line(type(value).__doc__)
            head = ConfigKey(key, "section", _MISSING, description or doc, section=type(value))
            sections.append((head, value))
            if not leaves_first:
                yield head
                yield from config_fields(value, prefix=f"{key}.")
            continue
        path = _is_path(field.annotation, list(field.metadata))
        default = _declared_default(field, value, path)  # a section's value for it (TrainPhase.steps has none)
        item = ConfigKey(key, _type_name(field.annotation, field.metadata), _jsonable(default), description,
                         path=path, execution=not prefix and name in EXECUTION_FIELDS)
        if leaves_first:
            leaves.append(item)
        else:
            yield item
    if leaves_first:
        yield from leaves
        for head, value in sections:
            yield head
            yield from config_fields(value, prefix=f"{head.key}.", leaves_first=True)


def _jsonable(value: Any) -> Any:
    if value is _MISSING:
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style, read back as the same value (`1.0e-06`, not `1e-06`)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _lookup(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def show_config(cfg: Section) -> str:
    """The resolved config as YAML, each key followed by a comment: its description and its default.

    A value equal to its default says `(default)`; another says `(default: X)`. The text parses back (with
    `load_config`) to the same config.
    """
    values = cfg.model_dump(mode="json")
    lines = []
    for item in config_fields():
        indent = "  " * item.depth
        note = item.description
        if item.section is not None:
            lines.append(f"{indent}{item.name}:" + (f"  # {note}" if note else ""))
            continue
        value = _lookup(values, item.key)
        if item.path and isinstance(item.default, str):
            same = value == absolute_path(item.default)
        else:
            same = value == item.default
        default = "(default)" if same else f"(default: {_flow(item.default)})"
        if item.execution:
            default += " (execution only: not in the config hash)"
        comment = f"{note} {default}" if note else default
        lines.append(f"{indent}{item.name}: {_flow(value)}  # {comment}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


REFERENCE_COMMAND = "agent-forge config reference > docs/config.md"


def reference_markdown() -> str:
    """The config reference (`docs/config.md`): every key, its type, default and description, by section."""
    from ..registry import STAGES

    out = [
        "# Configuration reference",
        "",
        f"<!-- generated by `{REFERENCE_COMMAND}`; do not edit: tests/config/test_config_reference.py "
        "fails when this file is stale -->",
        "",
        "A run is configured by a YAML file (`agent-forge run --config FILE`, or a packaged config by name: "
        "`--config smoke`; without `--config`, the packaged `tiny`) plus overrides on the command line, "
        "`key.path=value` with the value read as YAML (`seed_stage.pretrain.steps=10`, "
        "`stages=[seed,evomerge]`). A key not given keeps its default. "
        "`agent-forge config show [--config FILE] [overrides]` prints the resolved config with these descriptions; "
        "`agent-forge stages` lists the stages.",
        "",
        "Rules the loader enforces: unknown keys, a key given twice in one mapping, an empty or non-text file, "
        "and a training phase of 0 steps are errors. `${VAR}` in a value is replaced by the environment variable. "
        "Keys of type *path* take `~` and relative paths, resolved against the working directory when the "
        "config is loaded; the run's `config.yaml` records them absolute.",
        "",
        "The run's config hash (in `manifest.json`; a finished run is only re-run with the same hash) covers "
        "every key except the execution settings marked *(execution only)*: `name` and `run_root` say where "
        "the run goes and `threads` how fast it computes, so changing them does not make it a different run. "
        "`device` and `dtype` are part of the hash (CPU float32 and CUDA bfloat16 give different numbers), and "
        "so is `report` (the trajectory it measures is part of the run's results).",
        "",
        f"Stages, in run order: {', '.join(f'`{name}`' for name in STAGES)}.",
    ]
    table_open = False
    for item in config_fields(leaves_first=True):
        if item.section is not None:
            out += ["", f"{'#' * min(2 + item.depth, 4)} `{item.key}`", ""]
            doc = _first_line(item.section.__doc__)
            if item.description and doc and not doc.lower().startswith("stage"):  # a stage's docstring says it all
                text = f"{item.description[0].upper()}{item.description[1:]}. {doc}"
            else:
                text = doc or item.description
            out.append(_cell(text))
            table_open = False
            continue
        if not table_open:
            if item.depth == 0:
                out += ["", "## Top level", "", "The run itself: its name, seed, where it goes, what it computes on."]
            out += ["", "| key | type | default | description |", "|---|---|---|---|"]
            table_open = True
        default = f"`{_flow(item.default)}`"
        note = item.description + (" *(execution only)*" if item.execution else "")
        out.append(f"| `{item.key}` | {_cell(item.type)} | {_cell(default)} | {_cell(note)} |")
    return "\n".join(out) + "\n"
