"""Reading generated text that may contain thought spans (`<|startofthought|> ... <|endofthought|>`)."""

from __future__ import annotations

from ..models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT


def split_thoughts(text: str, start: str = START_OF_THOUGHT, end: str = END_OF_THOUGHT) -> list[tuple[str, bool]]:
    """Cut text into (piece, is_thought) around `start ... end` spans (the agent's own delimiter strings).

    An unclosed thought (generation stopped inside it) runs to the end of the text.
    """
    pieces: list[tuple[str, bool]] = []
    rest = text
    while start in rest:
        before, _, after = rest.partition(start)
        thought, closed, rest = after.partition(end)
        if before:
            pieces.append((before, False))
        pieces.append((thought, True))
        if not closed:
            rest = ""
    if rest:
        pieces.append((rest, False))
    return pieces
