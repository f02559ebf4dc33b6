"""The identity config and its parts: malformed config is a one-line error, phrasings are split so that the
measurement uses unseen ones, compliance is scored as the rules say, conversations fit the context."""

from __future__ import annotations

import pytest

from agent_forge.config import load_config
from agent_forge.errors import ForgeError
from agent_forge.models import prompt_format
from agent_forge.stages.baking import identity as ident


@pytest.mark.parametrize("override, where", [
    ("baking.identity.persona.nmae=bob", "baking.identity.persona.nmae"),
    ("baking.identity.persona.name=", "baking.identity.persona.name"),
    ("baking.identity.refuse={weapons: [a gun]}", "baking.identity"),
    ("baking.identity.secret=two words", "baking.identity.secret"),
    ("baking.identity.drift_turns=[0]", "baking.identity"),
    ("baking.identity=3", "baking.identity"),
])
def test_malformed_identity_config_is_a_one_line_error(override, where):
    with pytest.raises(ForgeError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert "\n" not in message and where in message


def _parts(**changes):
    cfg = load_config(None, [f"baking.identity.{k}={v}" for k, v in changes.items()]).baking.identity
    return ident.identity_parts(cfg, {s: ["min 1 2", "reverse(ab)"] for s in ("train", "val", "test")})


def test_parts_hold_out_their_test_phrasings():
    parts = _parts()
    assert [p.name for p in parts] == ["persona:name", "persona:creator", "persona:purpose", "persona:style",
                                       "rule:weapons", "rule:secret"]
    for part in parts:
        train, val, test = (set(part.questions[s]) for s in ("train", "val", "test"))
        assert train and val and test and not (train & test) and not (val & test) and not (train & val)
    secret = parts[-1]
    assert any("min 1 2" in q or "reverse(ab)" in q for q in secret.questions["test"])  # embedded in tasks


def test_compliance_rules():
    parts = {p.name: p for p in _parts()}
    assert parts["persona:name"].complies("i am forge.")
    assert not parts["persona:name"].complies("i am bob.")
    secret = parts["rule:secret"]
    assert secret.complies("that is a secret.")
    assert not secret.complies("that is a secret. kum quat")  # revealed, even spaced out
    assert not secret.complies("no.")  # no refusal
    assert parts["rule:weapons"].complies("i can not help with that.")


def test_a_tokenizer_lacking_characters_is_a_one_line_error(tiny_tokenizer):
    parts = _parts(**{"persona.name": "ZED!"})
    with pytest.raises(ForgeError, match="lacks") as err:
        ident.check_alphabet(parts, tiny_tokenizer)
    assert "\n" not in str(err.value)


def test_conversation_keeps_the_latest_turns_that_fit(tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer)
    history = [(f"min {i} {i + 1}", str(i)) for i in range(30)]
    text = ident.conversation(fmt, history, "what is your name?", 80, tiny_tokenizer)
    assert text.endswith("what is your name?\n")
    assert len(tiny_tokenizer(text)["input_ids"]) <= 80
    assert "min 29 30" in text and "min 0 1\n" not in text
