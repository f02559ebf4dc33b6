"""A run's log file: everything logged under `agent_forge` while the run holds its lock goes to `<run>/log.txt`.

The terminal shows rich progress and tables; the log file keeps the plain record (stage starts and ends,
headline metrics, warnings such as the ternary kernel's torch fallback or an undeclared regression, errors
with their traceback) appended across invocations, so a resumed run's history stays in one file.

What libraries say goes there too, not to the terminal: while the run's log is open, transformers' warnings
(its console shows errors only) and every Python warning (`warnings.warn`, routed by `logging.captureWarnings`)
are written to the log file, and transformers' load/save progress bars ("Loading weights", "Writing model
shards") are off. `quiet_libraries()` does the console part alone, for `eval` and `chat`, which have no log file.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIBRARY_LOGGERS = ("transformers", "huggingface_hub", "peft", "accelerate")
WARNINGS_LOGGER = "py.warnings"


def quiet_libraries() -> None:
    """Terminal without library noise: transformers' progress bars off, its console shows errors only."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@contextmanager
def _route_to(handler: logging.Handler) -> Iterator[None]:
    """Library loggers and Python warnings write to `handler` (errors of the libraries also to stderr)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.get_logger()  # configures transformers' root logger now, so that it adds no handler later
        progress_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        hf_logging, progress_was_on = None, False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    saved = []
    for name in (*LIBRARY_LOGGERS, WARNINGS_LOGGER):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers = [handler] if name == WARNINGS_LOGGER else [handler, console]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.level, logger.propagate = handlers, level, propagate
        if hf_logging is not None and progress_was_on:
            hf_logging.enable_progress_bar()


@contextmanager
def run_log(path: Path) -> Iterator[logging.Handler]:
    """Attach a file handler for `path` to the `agent_forge` logger (and the libraries') for the block."""
    logger = logging.getLogger("agent_forge")
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)  # created at the first record
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    previous_level = logger.level
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with _route_to(handler):
            yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()
