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
from .base import Section, UserPath
from .seed import SeedConfig, TinyModelConfig, TrainPhase
from .evomerge import EvoMergeConfig
from .quietstar import QuietStarConfig
from .bitnet import BitNetConfig
from .curriculum import CurriculumConfig
from .experts import ExpertsConfig
from .baking import BakingConfig
from .tools import ToolsConfig
from .adas import AdasConfig
from .package import PackageConfig

from ..registry import STAGE_ORDER
from .report import ReportConfig


class ForgeConfig(Section):
    """Top-level config: the run's identity and execution settings, then one section per stage.

    `name`, `run_root` and `threads` are execution settings (`EXECUTION_FIELDS`): they decide where a run goes
    and how fast it computes, not what it computes, so they are left out of `digest()` and a finished run
    re-run with another thread count, or moved and re-run under another name, is still the same run.
    `device` and `dtype` stay in the hash (CPU float32 and CUDA bfloat16 give different numbers), and so does
    `report` (the trajectory it measures is part of the run's results).
    """

    name: str = Field("tiny", description="the run's name: it goes to <run_root>/<name>/")
    seed: int = Field(0, description="seed of every random stream of the run (each stage derives its own from it)")
    run_root: UserPath = Field(
        "runs", validate_default=True, description="folder that holds the runs; relative to the working directory")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where models compute; auto: cuda if available")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="model precision; auto: float32 on CPU, bfloat16 on CUDA")
    threads: int = Field(
        0, ge=0, description="torch CPU threads; 0 keeps torch's default (lower it on a busy machine)")
    stages: list[str] = Field(
        default_factory=lambda: ["seed"], description="the stages to run, always in pipeline order (see `agent-forge stages`)")
    seed_stage: SeedConfig = Field(SeedConfig(), description="stage 0: the three specialists (seed)")
    evomerge: EvoMergeConfig = Field(EvoMergeConfig(), description="stage 1.1: evolutionary merge of the specialists")
    quietstar: QuietStarConfig = Field(QuietStarConfig(), description="stage 1.2: Quiet-STaR thought training")
    bitnet: BitNetConfig = Field(BitNetConfig(), description="stage 1.3: BitNet b1.58 ternary conversion and training")
    curriculum: CurriculumConfig = Field(CurriculumConfig(), description="stage 2: the ten-level RL curriculum")
    experts: ExpertsConfig = Field(ExpertsConfig(), description="stage 3: SVF expert vectors and their dispatch")
    baking: BakingConfig = Field(BakingConfig(), description="stage 3.5: prompt baking of knowledge, strategies and the identity")
    tools: ToolsConfig = Field(ToolsConfig(), description="stage 4.2: tool use (calculator, memory search) by traces and RL")
    adas: AdasConfig = Field(AdasConfig(), description="stage 4.3: ADAS search over agent designs (adas_optimized_model)")
    package: PackageConfig = Field(PackageConfig(), description="last stage: final compression and the deployable bundle")
    report: ReportConfig = Field(ReportConfig(), description="the trajectory measured after every stage")

    def stage_list(self) -> list[str]:
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ForgeError(f"unknown stage(s) {unknown}; known stages: {STAGE_ORDER}")
        return [s for s in STAGE_ORDER if s in self.stages]

    def digest(self) -> str:
        """Stable hash of the resolved config without its execution settings, recorded in the manifest.

        `utils.digest` of the JSON dump minus `EXECUTION_FIELDS` (before these were left out, the whole dump was
        hashed: runs made by earlier versions record a different hash and need `--resume` once).
        """
        return digest({k: v for k, v in self.model_dump(mode="json").items() if k not in EXECUTION_FIELDS})


# settings that decide where and how fast a run goes, not what it computes: not part of `ForgeConfig.digest()`
EXECUTION_FIELDS = frozenset({"name", "run_root", "threads"})


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


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping naming the same key twice (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys a `<<: *anchor` brings in may be overridden by keys written here
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first.line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """YAML text -> Python values, with duplicate mapping keys an error (`yaml.YAMLError`)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: as safe as yaml.safe_load


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ForgeError(f"config {path} is not a text file (it is not UTF-8); give a YAML file") from None
    except OSError as exc:
        raise ForgeError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ForgeError(f"config {path} is not a text file (it contains NUL bytes); give a YAML file")
    try:
        loaded = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ForgeError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    if loaded is None:
        raise ForgeError(
            f"config {path} is empty; give the settings to change (an empty mapping {{}} means every default, "
            "which is the full tiny pipeline)"
        )
    if not isinstance(loaded, dict):
        raise ForgeError(f"config {path} must be a mapping at the top level")
    return loaded


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> ForgeConfig:
    """Read YAML (or start from defaults), apply `a.b=value` overrides, validate; ForgeError on bad input.

    `path` is a file or a packaged config's name (see `resolve_config`); None starts from the built-in defaults.
    A file that is empty, not UTF-8 text, not a mapping, or names a key twice is refused. Path fields
    (`UserPath`) come back absolute, resolved against the working directory.
    """
    tree: dict = {}
    if path is not None:
        path = resolve_config(path)
        if not path.is_file():
            raise _config_not_found(str(path))
        tree = _expand_env(_read_yaml(path))
    for item in overrides or []:
        if "=" not in item:
            raise ForgeError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except yaml.constructor.ConstructorError as exc:
            raise ForgeError(f"override {item!r}: {exc.problem}") from None
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    try:
        return ForgeConfig.model_validate(_fill_section_defaults(tree, ForgeConfig()))
    except ValidationError as err:
        raise ForgeError(_format_validation_error(err)) from None


__all__ = [
    "EXECUTION_FIELDS", "ForgeConfig", "SeedConfig", "TinyModelConfig", "TrainPhase", "STAGE_ORDER", "load_config",
    "Section", "UserPath", "parse_yaml", "DEFAULT_CONFIG", "PACKAGED_CONFIG_DIR", "packaged_configs", "resolve_config",
]
