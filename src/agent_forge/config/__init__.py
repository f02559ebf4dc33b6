"""The whole run's configuration: one pydantic section per stage, loaded from YAML with CLI overrides.

`load_config(path, overrides)` is what the CLI calls; `agent-forge run --config configs/tiny.yaml seed.pretrain.steps=10`
exercises it. Every shipped YAML in `configs/` is validated by `tests/config/test_configs.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from ..errors import ForgeError
from .base import Section
from .seed import SeedConfig, TinyModelConfig, TrainPhase
from .evomerge import EvoMergeConfig
from .quietstar import QuietStarConfig
from .bitnet import BitNetConfig
from .curriculum import CurriculumConfig

STAGE_ORDER = [
    "seed", "evomerge", "quietstar", "bitnet", "curriculum", "experts", "baking", "tools", "adas", "package",
]


class ForgeConfig(Section):
    """Top-level config. Stage sections are added here as stages land."""

    name: str = "tiny"
    seed: int = 0
    run_root: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default")
    stages: list[str] = Field(default_factory=lambda: ["seed"])
    seed_stage: SeedConfig = SeedConfig()
    evomerge: EvoMergeConfig = EvoMergeConfig()
    quietstar: QuietStarConfig = QuietStarConfig()
    bitnet: BitNetConfig = BitNetConfig()
    curriculum: CurriculumConfig = CurriculumConfig()

    def stage_list(self) -> list[str]:
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ForgeError(f"unknown stage(s) {unknown}; known stages: {STAGE_ORDER}")
        return [s for s in STAGE_ORDER if s in self.stages]

    def digest(self) -> str:
        """Stable hash of the resolved config, recorded in the manifest."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set_dotted(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ForgeError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def _fill_section_defaults(tree: dict, defaults: Section) -> dict:
    """Complete each section the user gave in part with the default section's other values.

    Without this, `seed_stage.finetune.steps=10` would build a fresh TrainPhase and lose the finetune
    defaults (lr 3e-4 -> 1e-3): a section's defaults live on its parent, not on the section's class.
    """
    merged = dict(tree)
    for key, value in tree.items():
        current = getattr(defaults, key, None) if key in type(defaults).model_fields else None
        if isinstance(value, dict) and isinstance(current, Section):
            merged[key] = {**current.model_dump(), **_fill_section_defaults(value, current)}
    return merged


def _format_validation_error(err: ValidationError) -> str:
    # a misspelt key is the root cause of the "field required" errors it brings along, so it is named first
    first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid config at {where}: {first['msg']}{more}"


def _expand_env(node):
    """Expand ${VAR} in string values, so configs can name files by environment (e.g. model paths)."""
    if isinstance(node, dict):
        return {k: _expand_env(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v) for v in node]
    if isinstance(node, str) and "$" in node:
        expanded = os.path.expandvars(node)
        if "${" in expanded:
            raise ForgeError(f"config value {node!r} names an environment variable that is not set")
        return expanded
    return node


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> ForgeConfig:
    """Read YAML (or start from defaults), apply `a.b=value` overrides, validate; ForgeError on bad input."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ForgeError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ForgeError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ForgeError(f"config {path} must be a mapping at the top level")
        tree = _expand_env(loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ForgeError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    try:
        return ForgeConfig.model_validate(_fill_section_defaults(tree, ForgeConfig()))
    except ValidationError as err:
        raise ForgeError(_format_validation_error(err)) from None


__all__ = ["ForgeConfig", "SeedConfig", "TinyModelConfig", "TrainPhase", "STAGE_ORDER", "load_config", "Section"]
