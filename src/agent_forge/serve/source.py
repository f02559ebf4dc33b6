"""What `agent-forge serve RUN_OR_AGENT` serves: a run's agent, a version store's current version, or an agent
folder / GGUF file as given.

A version store (`interactions.versions`: `versions/<name>/`, `CURRENT`, `history.jsonl`) serves
`versions/<CURRENT>` under the store's folder name; so does a run that has been deployed through its store
`<run>/deploy/` (made by `agent-forge learn`), under the run's name. The server watches that store's pointer
(`serving_defaults(...)["version_store"]`, also for a run whose store does not exist yet) and swaps versions. `serving_defaults(source)` gives what the CLI fills in when
not told: the interaction log `interactions.sqlite` in the run directory or version store (beside an agent
folder or file otherwise), the version store itself, and the knowledge-base world that `facts` prompts are
verified against (the run's `seed`, from its `config.yaml`, when the agent belongs to a run).

The agent of a run is the `agent` output (the package stage's bundle) or else the `model` output of its last
finished stage (`manifest.json`: stages in run order, status "done"), so `agent-forge serve runs/tiny` serves
what the pipeline produced last. The served model name
is the run's name, or the folder's (with its parent's when the folder is generically named `model`/`packed`).

Exercise: `pytest tests/serve/test_settings.py`.
"""

from __future__ import annotations

import json
from pathlib import Path


from ..errors import ForgeError
from ..interactions import LOG_FILE, current_version, is_store, run_store
from ..interactions.versions import run_seed

MANIFEST = "manifest.json"
_GENERIC_NAMES = {"model", "packed", "agent"}
# the output of a finished stage that is the run's agent: the package stage's bundle, else the stage's model
AGENT_KEYS = ("agent", "model")


def resolve_agent_source(source: str) -> tuple[Path, str]:
    """(the agent folder or file to load, the model name to serve it under); ForgeError if there is none."""
    path = Path(source).expanduser()
    if not path.exists() and (Path("runs") / source / MANIFEST).is_file():
        path = Path("runs") / source
    if not path.exists():
        raise ForgeError(f"nothing to serve at {source}: give a run directory, an agent folder or a .gguf file")
    if (path / MANIFEST).is_file():
        if is_store(run_store(path)):  # deployed: the store's current version (learn / rollback move it)
            return current_version(run_store(path))[1], _run_name(path)
        return _run_agent(path)
    if path.is_dir() and is_store(path):
        return current_version(path)[1], path.resolve().name
    if path.is_dir() and not (path / "config.json").is_file():
        raise ForgeError(f"{path} is neither a run directory ({MANIFEST}) nor an agent folder (config.json)")
    name = path.stem if path.is_file() else path.resolve().name
    if name in _GENERIC_NAMES:
        name = f"{path.resolve().parent.name}/{name}"
    return path, name


def _run_agent(run_dir: Path) -> tuple[Path, str]:
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
        stages = manifest["stages"]
        records = list(stages.items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ForgeError(f"{run_dir / MANIFEST} is unreadable ({type(exc).__name__}: {exc})") from None
    for stage, record in reversed(records):
        if not isinstance(record, dict):
            continue
        outputs = record.get("outputs") or {}
        key = next((k for k in AGENT_KEYS if k in outputs), None)
        if record.get("status") == "done" and key is not None:
            recorded = Path(outputs[key])
            path = recorded if recorded.is_absolute() else run_dir.resolve() / recorded
            if not path.exists():
                raise ForgeError(f"run {run_dir}: the {stage} stage's {key} {path} is missing")
            return path, _run_name(run_dir, manifest)
    raise ForgeError(f"run {run_dir} has no finished stage with a model yet (see `agent-forge status {run_dir}`)")


def _run_name(run_dir: Path, manifest: dict | None = None) -> str:
    if manifest is None:
        try:
            manifest = json.loads((run_dir / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}
    name = manifest.get("name") if isinstance(manifest, dict) else None
    return str(name or run_dir.resolve().name)


def serving_defaults(source: str) -> dict:
    """{"log_path", "version_store", "facts_world"} for what `source` names (see the module doc)."""
    path = Path(source).expanduser()
    if not path.exists() and (Path("runs") / source / MANIFEST).is_file():
        path = Path("runs") / source
    path = path.resolve()
    store = path if path.is_dir() and is_store(path) else None
    run = next((p for p in [path, *path.parents] if (p / MANIFEST).is_file()), None)
    home = store or run or path.parent
    if store is None and run is not None and path == run:
        store = run_store(run)  # watched even before `learn` creates it
    return {"log_path": home / LOG_FILE, "version_store": store, "facts_world": run_seed(run) if run else None}


