"""Generated token ids -> streamable text: incremental detokenization, stop strings, held-back suffixes.

`TextStream.push(token_id)` returns the text that is now safe to send to a client and whether a stop string
was hit. Text is decoded incrementally (the window trick of text-generation-inference: decode a short window
before and after the new token and send the difference, so multi-byte characters and SentencePiece's leading
spaces come out right, and no step decodes the whole answer). A suffix that could still grow into a stop string,
or into the tool-call opening tag when the request declared tools, is held back until it is decided; once a
tool call opens, nothing after it is streamed as content (the handler turns it into `tool_calls`).

`incremental=False` (a request that is not streamed and has no stop strings) skips all of that: the ids are
decoded once, by `finish`, which saves a fifth of a busy decode step's time on the tiny model.

Exercise: `pytest tests/serve/test_textstream.py`.
"""

from __future__ import annotations

from typing import Sequence


class TextStream:
    """The visible text of one generated answer, growing one token at a time."""

    def __init__(self, tokenizer, stop: Sequence[str] = (), hold_from: str | None = None, incremental: bool = True):
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._incremental = incremental or bool(self._stop)
        self._hold_from = hold_from  # text from this marker on is never streamed as content (tool calls)
        self._held_prefixes = self._stop + ((hold_from,) if hold_from else ())
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""  # decoded so far, cut at the first stop string once one appears
        self.sent = 0  # characters of `text` already returned as deltas
        self.stopped = False

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add one generated (non-terminator) token; return (delta to send now, stop string hit)."""
        if self.stopped:
            return "", True
        self._ids.append(token_id)
        if not self._incremental:
            return "", False
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            new = after[len(before) :]
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            search_from = max(0, len(self.text) - max((len(s) for s in self._stop), default=0))
            self.text += new
            hit = self._first_stop(search_from)
            if hit is not None:
                self.text = self.text[:hit]
                self.stopped = True
                return self._take(len(self.text)), True
        return self._take(self._safe_end()), False

    def finish(self) -> str:
        """Generation ended (terminator or length): everything not yet sent except a held tool call."""
        if not self._incremental:
            self.text = self._decode(self._ids)
        end = len(self.text)
        if self._hold_from and self._hold_from in self.text:
            end = self.text.index(self._hold_from)
        return self._take(end)

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    def _first_stop(self, search_from: int) -> int | None:
        hits = [i for s in self._stop if (i := self.text.find(s, search_from)) >= 0]
        return min(hits) if hits else None

    def _safe_end(self) -> int:
        """How much of `text` may be sent: not a tool call, not a suffix that may still become a held string."""
        text = self.text
        if self._hold_from and self._hold_from in text:
            return text.index(self._hold_from)
        end = len(text)
        for marker in self._held_prefixes:
            for size in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:size]):
                    end = min(end, len(text) - size)
                    break
        return end

    def _take(self, end: int) -> str:
        if end <= self.sent:
            return ""
        delta = self.text[self.sent : end]
        self.sent = end
        return delta
