"""`manifest.json`: the single record of what a run has finished, and the only thing resume trusts.

A stage counts as finished only when its entry says `"done"`, and the runner writes that entry last, after
the stage's models and `metrics.json` exist and were flushed. Paths inside the run directory are stored
relative to it, so a run directory can be moved or copied as a whole.

Exercise: `agent-forge status runs/tiny` (reads it) or `python -m pytest tests/pipeline/test_pipeline_runner.py`.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ForgeError
from ..utils import atomic_write_json

MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.yaml"
FORMAT_VERSION = 1

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string with second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class StageRecord:
    """One stage's entry: where it writes, how far it got, how long it took, what it produced."""

    name: str
    dir: str
    status: str = PENDING
    seed: int | None = None
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: str | None = None
    error: str | None = None

    def reset(self) -> None:
        """Back to pending (the attempt count is kept: it tells how often the stage was started)."""
        self.status = PENDING
        self.started_at = self.finished_at = self.duration_s = self.metrics = self.error = None
        self.outputs = {}


@dataclass
class Manifest:
    """The whole manifest; `stages` keeps the run's stage order."""

    name: str
    config_hash: str
    seed: int
    versions: dict[str, str | None]
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    # one entry per invocation that changed the run: created / resumed / config changed, with versions, the
    # torch thread count it computed with and the command line it was started by (`invocation_record`)
    history: list[dict[str, Any]] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {name: asdict(record) for name, record in self.stages.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """The manifest written by `to_dict`; ValueError naming what is missing or of the wrong kind."""
        if not isinstance(data, dict):
            found = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
            raise ValueError(f"expected a JSON object, found {'null' if data is None else found.get(type(data), 'a value')}")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise ValueError(f"it lacks {', '.join(missing)}")
        if not isinstance(data.get("stages", {}), dict) or not all(
            isinstance(record, dict) for record in data.get("stages", {}).values()
        ):
            raise ValueError("its stages are not JSON objects")
        stages = {name: StageRecord(**record) for name, record in data.get("stages", {}).items()}
        fields = {k: v for k, v in data.items() if k != "stages"}
        return cls(stages=stages, **fields)

    def save(self, run_dir: Path) -> None:
        """Atomically replace `run_dir/manifest.json`."""
        self.updated_at = utc_now()
        atomic_write_json(Path(run_dir) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def load(cls, run_dir: Path) -> "Manifest":
        """Read a run's manifest; ForgeError when it is missing or unreadable."""
        path = Path(run_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ForgeError(f"no agent-forge run at {run_dir} ({MANIFEST_NAME} not found)")
        try:
            manifest = cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON and Unicode errors are ValueErrors
            raise ForgeError(f"{path} is corrupted ({_first_line(exc)}); move the run away and start again") from None
        bad = [r.name for r in manifest.stages.values() if r.status not in STATUSES]
        if bad:
            raise ForgeError(f"{path} has an unknown status for stage(s) {bad}")
        return manifest

    def output_paths(self, stage: str, run_dir: Path) -> dict[str, Path]:
        """A stage's recorded outputs as absolute paths."""
        return {key: resolve_recorded(run_dir, value) for key, value in self.stages[stage].outputs.items()}


REQUIRED_FIELDS = ("name", "config_hash", "seed", "versions")


# the program names under which the console script runs: `agent-forge`, or `python -m agent_forge.cli`
_CLI_PROGRAMS = {"agent-forge", "cli.py"}


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, shell-quoted as a user types it (`agent-forge run threads=1`).

    The console script's path (or `python -m agent_forge.cli`'s module file) is written `agent-forge`; any
    other program (a test runner, a script calling `run_pipeline`) is written as it was invoked.
    """
    argv = list(sys.argv if argv is None else argv) or [""]
    called = Path(argv[0])
    is_cli = called.name in _CLI_PROGRAMS or (called.name == "__main__.py" and called.parent.name == "cli")
    program = "agent-forge" if is_cli else argv[0]
    return shlex.join([program, *argv[1:]])


def invocation_record(command: str | None = None) -> dict[str, Any]:
    """What one invocation computed with: torch's thread count now (after `configure_threads`) and its command."""
    import torch

    return {"threads": torch.get_num_threads(), "command": command if command is not None else command_line()}


def invocations(manifest: "Manifest") -> list[dict[str, Any]]:
    """The history entries that record threads and command (runs made before they were recorded have none)."""
    return [entry for entry in manifest.history if "threads" in entry or "command" in entry]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def record_path(run_dir: Path, path: Path) -> str:
    """How a path is written into the manifest: relative (POSIX) inside the run directory, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(run_dir).resolve()).as_posix()
    except ValueError:
        return str(path)


def resolve_recorded(run_dir: Path, recorded: str) -> Path:
    """Inverse of `record_path`."""
    path = Path(recorded)
    return path if path.is_absolute() else Path(run_dir).resolve() / path
