"""General language ability: perplexity on general English text that ships offline with Python.

The task suites say nothing about whether a stage damaged what a pretrained model knows about language (BitNet
conversion of a model not trained ternary is the known case). This measures it on text no stage trains on: the
documentation strings of a fixed list of Python standard library modules (`MODULES`), read from the installed
interpreter's source files with `ast` (never imported, so nothing runs). From each module, in source order:
the module's docstring, then every class, function and method docstring; doctest lines (`>>>`, `...`) are
dropped and docstrings under `MIN_WORDS` words (signatures, "Return self.") skipped, so what remains is prose.
The pieces are taken round-robin over the modules (each module's first, then each one's second, ...) and
joined with blank lines, so that the first few thousand tokens already span every module.

`general_text_perplexity(model, tokenizer, tokens, window)` tokenizes that text with the model's own tokenizer
(no special tokens), keeps the first `tokens` tokens, cuts them into non-overlapping windows of `window`
tokens and returns exp(mean next-token negative log-likelihood) over every predicted position (the first
token of each window has no context and is not scored). The text depends on the Python version (docstrings
change between releases), so the record names the version and a digest of the scored text: two measurements
compare only when their digests agree. Pretraining corpora (e.g. The Stack) may contain these docstrings, so
the absolute value is not a contamination-free benchmark; the change from a stage's entering to its leaving
model is what the trajectory reports.
Exercise: `pytest tests/evaluation/test_general_text.py`.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import math
import platform
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..errors import ForgeError

# Modules whose docstrings are mostly explanatory English prose. Fixed and ordered: the scored text is their
# concatenation in this order, so it is the same on every run of one Python version.
MODULES = (
    "argparse", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses", "datetime", "difflib",
    "fractions", "functools", "heapq", "logging", "pathlib", "pprint", "random", "sched", "shutil", "statistics",
    "string", "subprocess", "tempfile", "textwrap", "threading", "zipfile",
)
MIN_WORDS = 8


def _docstrings(source: str) -> list[str]:
    """The module's, then every class's and function's docstring (source order), cleaned, doctests removed."""
    tree = ast.parse(source)
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    # ast.walk is breadth-first; source order reads like the documentation does
    nodes = [tree] + sorted(nodes[1:], key=lambda n: (n.lineno, n.col_offset))
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            continue
        lines = [line for line in doc.splitlines() if not line.lstrip().startswith((">>>", "..."))]
        text = inspect.cleandoc("\n".join(lines)).strip()
        if len(text.split()) >= MIN_WORDS:
            out.append(text)
    return out


@lru_cache(maxsize=1)
def general_text() -> str:
    """The scored text: the docstrings of `MODULES`, round-robin over the modules, joined by blank lines."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    per_module = []
    for name in MODULES:
        # a module or a package, which some become between versions (zipfile in 3.12)
        file = next((f for f in (stdlib / f"{name}.py", stdlib / name / "__init__.py") if f.is_file()), None)
        if file is None:
            raise ForgeError(f"general text: no source of the standard library module {name} in {stdlib} (a Python without .py sources?)")
        per_module.append(_docstrings(file.read_text(encoding="utf-8")))
    rounds = max(len(docs) for docs in per_module)
    return "\n\n".join(docs[i] for i in range(rounds) for docs in per_module if i < len(docs))


def text_tokens(tokenizer, tokens: int) -> list[int]:
    """The first `tokens` token ids of the general text under `tokenizer` (no special tokens)."""
    ids = tokenizer(general_text(), add_special_tokens=False)["input_ids"]
    if len(ids) < tokens:
        raise ForgeError(f"general text has only {len(ids)} tokens under this tokenizer; ask for at most that many")
    return ids[:tokens]


def general_text_perplexity(model, tokenizer, tokens: int, window: int, *, batch_size: int = 4) -> dict[str, Any]:
    """Perplexity of `model` on the first `tokens` tokens of the general text, in windows of `window` tokens."""
    if window < 2:
        raise ForgeError(f"general text window must be at least 2 tokens, got {window}")
    ids = text_tokens(tokenizer, tokens)
    windows = [ids[i : i + window] for i in range(0, len(ids) - window + 1, window)]
    if not windows:
        raise ForgeError(f"general text: {tokens} tokens make no window of {window}")
    device = next(model.parameters()).device
    total_nll, scored = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                batch = torch.tensor(windows[start : start + batch_size], dtype=torch.long, device=device)
                logits = model(input_ids=batch).logits.float()
                # the logits at position t predict token t+1
                nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
                total_nll += nll.item()
                scored += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    used = [t for w in windows for t in w]
    return {
        "perplexity": round(math.exp(total_nll / scored), 3),
        "tokens": len(used),
        "window": window,
        "source": f"python {platform.python_version()} stdlib docstrings ({len(MODULES)} modules)",
        "digest": hashlib.sha256(",".join(map(str, used)).encode()).hexdigest()[:16],
    }
