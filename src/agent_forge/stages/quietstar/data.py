"""Training data of the Quiet-STaR stage: task answers (some written out with their worked steps) and text files.

Quiet-STaR learns from text in which reasoning is implicit (the paper trains on OpenWebMath and C4). Here the
text is the task corpora's training split in the pipeline's prompt/answer form: a share `worked_fraction` of
the items from domains with worked steps are shown as `"<prompt> (show steps)"` answered by
`"<steps> => <answer>"`, the rest as the plain prompt and answer every later stage uses. The distinct prompt
keeps the two forms apart, so a plain prompt is still answered directly (thinking is what may carry the
steps there). Text files named in the config are cut into chunks and trained as answers to an empty prompt.
The same seed gives the same batches, so Quiet-STaR and its no-thought control see identical data.
Exercise: `pytest tests/stages/quietstar/test_quietstar_data.py`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

from ...errors import ForgeError
from ...tasks import iter_tasks
from ...tasks.worked import worked_pair

Pair = tuple[str, str]


def text_chunks(paths: Sequence[str | Path], max_chars: int) -> list[str]:
    """Cut each file into pieces of at most `max_chars` characters at whitespace; ForgeError if one is unreadable."""
    chunks: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ForgeError(f"quietstar.text_files: {path} is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ForgeError(f"quietstar.text_files: cannot read {path} as UTF-8 text ({exc.__class__.__name__})") from None
        words = text.split()
        if not words:
            raise ForgeError(f"quietstar.text_files: {path} is empty")
        current = ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if len(candidate) > max_chars and current:
                chunks.append(current)
                current = word[:max_chars]
            else:
                current = candidate[:max_chars]
        if current:
            chunks.append(current)
    return chunks


def training_batches(
    domains: Sequence[str],
    levels: Sequence[int],
    *,
    batch_size: int,
    worked_fraction: float,
    texts: Sequence[str] = (),
    seed: int,
) -> Callable[[int], list[Pair]]:
    """`next_batch(step)` for `train_supervised`: a deterministic stream of (prompt, answer) pairs.

    With texts, each item is a text chunk with probability len(texts) / (len(texts) + batch_size * 8), capped
    at one half, so a small file does not crowd out the tasks.
    """
    stream = iter_tasks(list(domains), list(levels), "train", seed)
    rng = random.Random(f"quietstar-data|{seed}")
    text_share = min(0.5, len(texts) / (len(texts) + batch_size * 8)) if texts else 0.0

    def item() -> Pair:
        if texts and rng.random() < text_share:
            return "", texts[rng.randrange(len(texts))]
        task = next(stream)
        if rng.random() < worked_fraction:
            worked = worked_pair(task)
            if worked is not None:
                return worked
        return task.prompt, task.answer

    return lambda step: [item() for _ in range(batch_size)]
