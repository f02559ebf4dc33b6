"""A run's log file: everything logged under `agent_forge` while the run holds its lock goes to `<run>/log.txt`.

The terminal shows rich progress and tables; the log file keeps the plain record (stage starts and ends,
headline metrics, warnings such as the ternary kernel's torch fallback or an undeclared regression, errors
with their traceback) appended across invocations, so a resumed run's history stays in one file.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def run_log(path: Path) -> Iterator[logging.Handler]:
    """Attach a file handler for `path` to the `agent_forge` logger for the duration of the block."""
    logger = logging.getLogger("agent_forge")
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)  # created at the first record
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    previous_level = logger.level
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()
