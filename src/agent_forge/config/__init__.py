"""The whole run's configuration: one pydantic section per stage, loaded from YAML with CLI overrides.

`load_config(path, overrides)` is what the CLI calls; `agent-forge run --config tiny seed.pretrain.steps=10`
exercises it. `path` is a YAML file, or the name of a config packaged in `agent_forge/configs/` (`tiny`,
`smoke`, ...; see `resolve_config`). Every packaged YAML is validated by `tests/config/test_configs.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from ..errors import ForgeError
from ..utils.hashing import digest
from .base import Section
from .seed import SeedConfig, TinyModelConfig, TrainPhase
from .evomerge import EvoMergeConfig
from .quietstar import QuietStarConfig
from .bitnet import BitNetConfig
from .curriculum import CurriculumConfig

from ..registry import STAGE_ORDER
from .report import ReportConfig


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
    report: ReportConfig = ReportConfig()

    def stage_list(self) -> list[str]:
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ForgeError(f"unknown stage(s) {unknown}; known stages: {STAGE_ORDER}")
        return [s for s in STAGE_ORDER if s in self.stages]

    def digest(self) -> str:
        """Stable hash of the resolved config, recorded in the manifest."""
        return digest(self.model_dump(mode="json"))


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


PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "tiny"


def packaged_configs() -> dict[str, Path]:
    """The configs shipped inside the package, by name (file name without `.yaml`)."""
    return {p.stem: p for p in sorted(PACKAGED_CONFIG_DIR.glob("*.yaml"))}


def _is_config_name(spec: str) -> bool:
    """`smoke` is a name; `./smoke`, `dir/smoke`, `smoke.yaml` are paths."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return bool(spec) and not any(sep in spec for sep in separators) and not spec.endswith((".yaml", ".yml"))


def _config_not_found(shown: str) -> ForgeError:
    path = Path(shown)
    hint = ""
    if path.suffix in (".yaml", ".yml") and path.stem in packaged_configs():
        hint = f" (the packaged config of that name is --config {path.stem})"
    return ForgeError(f"config file not found: {shown}{hint}")


def resolve_config(spec: Path | str) -> Path:
    """A config argument -> the YAML file it means.

    A `Path` is always a file path. A string that is an existing file is used as is; a bare name (no path
    separator, no `.yaml`/`.yml`) that is not a file names a packaged config (`tiny`, `smoke`, ...),
    ForgeError if there is none of that name; any other string is a path, ForgeError if no such file.
    Strings are judged as typed: `Path("./smoke")` would drop the `./` that marks a path.
    """
    if isinstance(spec, Path):
        return spec
    text = spec
    path = Path(text)
    if path.is_file():
        return path
    if not _is_config_name(text):
        raise _config_not_found(text)
    packaged = packaged_configs()
    if text not in packaged:
        raise ForgeError(f"no config named {text!r} (packaged: {', '.join(packaged) or 'none'})")
    return packaged[text]


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> ForgeConfig:
    """Read YAML (or start from defaults), apply `a.b=value` overrides, validate; ForgeError on bad input.

    `path` is a file or a packaged config's name (see `resolve_config`); None starts from the built-in defaults.
    """
    tree: dict = {}
    if path is not None:
        path = resolve_config(path)
        if not path.is_file():
            raise _config_not_found(str(path))
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


__all__ = [
    "ForgeConfig", "SeedConfig", "TinyModelConfig", "TrainPhase", "STAGE_ORDER", "load_config", "Section",
    "DEFAULT_CONFIG", "PACKAGED_CONFIG_DIR", "packaged_configs", "resolve_config",
]
