"""The stage's training stream: worked steps behind a distinct prompt, text files, determinism, bad input."""

from __future__ import annotations

import pytest

from agent_forge.errors import ForgeError
from agent_forge.stages.quietstar.data import text_chunks, training_batches
from agent_forge.tasks import make_tasks
from agent_forge.tasks.worked import STEPS_TO_ANSWER, WORKED_SUFFIX, worked_pair


def test_worked_pair_shows_the_steps_then_the_answer():
    task = make_tasks("arithmetic", 3, "train", 1, 0)[0]
    prompt, answer = worked_pair(task)
    assert prompt == task.prompt + WORKED_SUFFIX
    assert answer == task.rationale + STEPS_TO_ANSWER + task.answer


def test_batches_mix_plain_and_worked_items_deterministically():
    make = lambda: training_batches(["arithmetic", "logic"], [3, 4], batch_size=32, worked_fraction=0.5, seed=1)
    a, b = make(), make()
    first = [a(step) for step in range(3)]
    assert first == [b(step) for step in range(3)]
    items = [pair for batch in first for pair in batch]
    worked = [p for p in items if p[0].endswith(WORKED_SUFFIX)]
    assert 0.25 < len(worked) / len(items) < 0.75
    assert all(STEPS_TO_ANSWER in answer for _, answer in worked)
    plain = [p for p in items if not p[0].endswith(WORKED_SUFFIX)]
    assert all(STEPS_TO_ANSWER not in answer for _, answer in plain)


def test_no_worked_items_when_the_fraction_is_zero():
    batch = training_batches(["arithmetic"], [3], batch_size=16, worked_fraction=0.0, seed=0)(0)
    assert not any(p.endswith(WORKED_SUFFIX) for p, _ in batch)


def test_text_files_are_chunked_and_mixed_in(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("the carry goes to the next column " * 20)
    chunks = text_chunks([path], max_chars=40)
    assert all(0 < len(c) <= 40 for c in chunks) and len(chunks) > 5
    assert " ".join(chunks).split() == path.read_text().split()
    batches = training_batches(["logic"], [1], batch_size=8, worked_fraction=0.0, texts=chunks, seed=0)
    items = [pair for step in range(20) for pair in batches(step)]
    assert any(prompt == "" and answer in chunks for prompt, answer in items)


def test_unreadable_text_files_are_forge_errors(tmp_path):
    with pytest.raises(ForgeError, match="not a file"):
        text_chunks([tmp_path / "missing.txt"], 100)
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ForgeError, match="empty"):
        text_chunks([empty], 100)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ForgeError, match="UTF-8"):
        text_chunks([binary], 100)
