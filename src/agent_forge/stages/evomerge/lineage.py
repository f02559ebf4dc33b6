"""The lineage file: one JSON line per evaluated candidate (recipe, parents, fitness, timings).

Lines are appended and flushed as candidates finish, so a run can be followed live (`tail -f lineage.jsonl`).
After a kill, `truncate_after(path, generation)` drops the lines of generations that never finished, so a
resumed run rewrites them and the file ends identical to an uninterrupted run's (apart from timings).
Exercise: `python -m pytest tests/stages/evomerge/test_engine.py -k resume`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from ...utils.atomic import atomic_write_text


class LineageLog:
    """Append-only JSONL of candidate records."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        return  # a line cut by a kill: everything after it is discarded too

    def truncate_after(self, generation: int) -> None:
        """Keep only records of generations <= `generation` (a negative value empties the file)."""
        kept = [r for r in self.records() if r["generation"] <= generation]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
