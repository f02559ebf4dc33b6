"""A stage's resume record: which of its phases are finished, valid only for the config and input it names.

Stages that resume part-way (one expert at a time, one training phase at a time) keep `state.json` in their
scratch directory, written last after each finished phase. A record whose fingerprint (a digest of the stage's
config, seed and input) differs belongs to another run of the stage: it is discarded with the scratch files.

    state = load_phase_state(ctx.scratch_dir, {"cfg": ..., "seed": ..., "source": ...})
    if "sft" not in state["done"]: ...; state["done"].append("sft"); save_phase_state(ctx.scratch_dir, state)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json
from .hashing import digest

STATE_FILE = "state.json"


def load_phase_state(scratch: Path, fingerprint: Any) -> dict:
    """The recorded state for this fingerprint, or a fresh one (`done: []`, `logs: {}`) in an emptied scratch dir."""
    scratch = Path(scratch)
    key = digest(fingerprint)
    path = scratch / STATE_FILE
    if path.is_file():
        try:
            state = json.loads(path.read_text())
            if isinstance(state, dict) and state.get("digest") == key:
                return state
        except json.JSONDecodeError:
            pass
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    return {"digest": key, "done": [], "logs": {}}


def save_phase_state(scratch: Path, state: dict) -> None:
    """Record the state atomically (call it after the phase's files are written: it names them finished)."""
    atomic_write_json(Path(scratch) / STATE_FILE, state)
