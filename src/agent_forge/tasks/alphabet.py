"""Every character a task can contain, for building the character-level tokenizer of the tiny profile.

Prompts, answers, rationales and knowledge-base statements/passages of every domain and level use only
these characters (tests/tasks/test_task_alphabet.py checks it). The newline that ends a rendered prompt is
added by the prompt format, not by the tasks, so it is not listed. Exercise it with:

    python -c "from agent_forge.tasks import alphabet; print(repr(alphabet()))"
"""

import string

_PUNCTUATION = "()*+,-.:;<=>?"


def alphabet() -> str:
    """The sorted, de-duplicated characters of all task text: space, punctuation, digits, lowercase letters."""
    return "".join(sorted(set(" " + _PUNCTUATION + string.digits + string.ascii_lowercase)))
