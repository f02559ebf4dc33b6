"""Every character any task or world sentence can contain is in alphabet(), and nothing exotic is."""

import pytest

from agent_forge.tasks import DOMAINS, LEVELS, SPLITS, KnowledgeBase, alphabet, make_tasks


def test_alphabet_is_small_sorted_plain_ascii():
    chars = alphabet()
    assert chars == "".join(sorted(set(chars)))
    assert all(32 <= ord(c) < 127 for c in chars)
    assert not any(c.isupper() for c in chars) and "\n" not in chars
    assert len(chars) <= 50


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_task_character_is_in_the_alphabet(domain):
    allowed = set(alphabet())
    used = set()
    for level in LEVELS:
        for split in SPLITS:
            for task in make_tasks(domain, level, split, 60, seed=level):
                used |= set(task.prompt) | set(task.answer) | set(task.rationale or "")
    assert used <= allowed, sorted(used - allowed)


def test_world_text_is_in_the_alphabet():
    allowed = set(alphabet())
    for seed in (0, 1, 2):
        kb = KnowledgeBase.build(seed)
        text = "".join(kb.statements()) + "".join(pid + passage for pid, passage in kb.passages())
        assert set(text) <= allowed, sorted(set(text) - allowed)


def test_the_alphabet_is_used_not_padded():
    """Each listed character really occurs somewhere, so the tokenizer spends no ids on dead symbols."""
    used = set()
    for domain in DOMAINS:
        for level in LEVELS:
            for task in make_tasks(domain, level, "train", 60, seed=0):
                used |= set(task.prompt) | set(task.answer) | set(task.rationale or "")
    used |= set("".join(KnowledgeBase.build(0).statements()))
    assert set(alphabet()) == used
