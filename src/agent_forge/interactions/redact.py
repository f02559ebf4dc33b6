"""Redaction of configured secrets before anything is written to the interaction log.

A `Redactor` replaces every occurrence of each configured secret (literal strings: the server's API keys are
always among them) and of each configured pattern (`re:<regular expression>`) with `[REDACTED]`, in every
text field of a row (prompt, answer, thoughts, tool arguments and results, corrections, errors). Secrets come
from `--redact` (repeatable) and from `AGENT_FORGE_REDACT` (comma-separated, so they need not appear on a
command line). A pattern that does not compile is refused with a one-line error.

Exercise: `pytest tests/interactions/test_log.py`.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

from ..errors import ForgeError

REDACT_ENV = "AGENT_FORGE_REDACT"
MARK = "[REDACTED]"
PATTERN_PREFIX = "re:"


def resolve_redactions(cli: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    environ = os.environ if environ is None else environ
    found = [*cli, *environ.get(REDACT_ENV, "").split(",")]
    return tuple(dict.fromkeys(s for s in found if s and s.strip()))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        literals, patterns = [], []
        for secret in secrets:
            if secret.startswith(PATTERN_PREFIX):
                try:
                    patterns.append(re.compile(secret[len(PATTERN_PREFIX):]))
                except re.error as exc:
                    raise ForgeError(f"--redact {secret!r} is not a valid regular expression: {exc}") from None
            elif secret:
                literals.append(secret)
        # longest first, so a secret that contains another is replaced whole
        literals.sort(key=len, reverse=True)
        if literals:
            patterns.insert(0, re.compile("|".join(re.escape(s) for s in literals)))
        self.patterns = patterns

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def text(self, value: str | None) -> str | None:
        if not value or not self.patterns:
            return value
        for pattern in self.patterns:
            value = pattern.sub(MARK, value)
        return value

    def deep(self, value: Any) -> Any:
        """Every string inside lists/dicts (tool arguments, thoughts, choices) redacted; keys too."""
        if not self.patterns:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.deep(v) for k, v in value.items()}
        return value
