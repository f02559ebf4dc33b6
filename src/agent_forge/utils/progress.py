"""Progress bars for long loops (training steps, evaluation batches, search generations).

`progress(iterable, desc=...)` wraps tqdm with the project's defaults: bars go to stderr, disappear when the
loop ends (the caller prints the result), and can be silenced for logs and tests with the environment
variable `AGENT_FORGE_PROGRESS=0`.

Exercise: `python -c "from agent_forge.utils import progress; [None for _ in progress(range(10**6), desc='demo')]"`.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when the user turned bars off with AGENT_FORGE_PROGRESS=0 (or false/no/off)."""
    return os.environ.get("AGENT_FORGE_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    leave: bool = False,
) -> tqdm:
    """A tqdm bar over `iterable` (or a manual bar with `total` when iterable is None; call `.update(n)`)."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        dynamic_ncols=True,
        disable=not progress_enabled(),
    )
