"""Incremental text: the pieces add up to the full decode, stop strings cut it, held suffixes wait."""

from __future__ import annotations

from agent_forge.models import build_tiny_tokenizer
from agent_forge.serve.textstream import TextStream

TOKENIZER = build_tiny_tokenizer("abcdefghijklmnopqrstuvwxyz <>_/{}\"é✓")


def stream_of(text: str, **kwargs) -> tuple[list[str], TextStream]:
    stream = TextStream(TOKENIZER, **kwargs)
    pieces = []
    for token in TOKENIZER(text, add_special_tokens=False)["input_ids"]:
        delta, stopped = stream.push(token)
        pieces.append(delta)
        if stopped:
            return pieces, stream
    pieces.append(stream.finish())
    return pieces, stream


def test_pieces_add_up_to_the_decoded_text():
    text = "hello wörld é ✓ done".replace("ö", "o")
    pieces, stream = stream_of(text)
    assert "".join(pieces) == text == stream.text


def test_stop_string_cuts_the_text_even_across_tokens():
    pieces, stream = stream_of("one two three", stop=("two",))
    assert stream.stopped and stream.text == "one " and "".join(pieces) == "one "


def test_a_possible_stop_prefix_is_held_back_then_released():
    stream = TextStream(TOKENIZER, stop=("xyz",))
    ids = TOKENIZER("abxyq", add_special_tokens=False)["input_ids"]
    deltas = [stream.push(t)[0] for t in ids]
    assert deltas == ["a", "b", "", "", "xyq"]  # "x", "xy" might have become "xyz"


def test_tool_call_text_is_never_streamed():
    pieces, stream = stream_of('see <tool_call>{"name"}</tool_call>', hold_from="<tool_call>")
    assert "".join(pieces) == "see " and stream.text.endswith("</tool_call>")


def test_non_incremental_streams_decode_once_at_the_end():
    pieces, stream = stream_of("abc def", incremental=False)
    assert pieces[:-1] == [""] * 7 and pieces[-1] == "abc def" == stream.text
