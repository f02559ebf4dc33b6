"""A static check of generated source before it is run: parsed with `ast` in the parent (parsing runs nothing).

`check_source(source, entry, arity=2)` returns one line naming the first problem (too long, a syntax error, no
top-level `def entry`, an entry that cannot be called with `arity` positional arguments), or None. It is a cheap
filter for proposals; it proves nothing about what the code does, which is the sandbox's job.
"""

from __future__ import annotations

import ast

MAX_SOURCE_CHARS = 200_000


def _arity_problem(function: ast.FunctionDef, arity: int) -> str | None:
    arguments = function.args
    positional = len(arguments.posonlyargs) + len(arguments.args)
    required = positional - len(arguments.defaults)
    if any(default is None for default in arguments.kw_defaults):
        return f"{function.name} has a required keyword-only argument"
    if arity < required or (arity > positional and arguments.vararg is None):
        return f"{function.name} takes {required}..{positional} positional arguments, not {arity}"
    return None


def check_source(source: str, entry: str, arity: int = 2) -> str | None:
    """One line naming what is wrong with `source` as a block whose `entry(...)` takes `arity` arguments."""
    if not isinstance(source, str):
        return "the source is not text"
    if len(source) > MAX_SOURCE_CHARS:
        return f"the source has {len(source)} characters, over the {MAX_SOURCE_CHARS} limit"
    try:
        tree = ast.parse(source, filename="<agent block>")
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"unparsable source: {type(exc).__name__}"
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == entry:
            return f"{entry} is async; it must be a plain function"
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            return _arity_problem(node, arity)
    return f"no top-level function named {entry}"
