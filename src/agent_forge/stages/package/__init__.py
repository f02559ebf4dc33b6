"""Stage 5.1 (package): the final compression pass and one deployable bundle, `NN-package/agent/`.

A ternary agent is bundled as its 2-bit packed export (decoder linears packed, the C kernel runs them) with
every extension beside it (thought head, experts, tools); a full-precision agent as its HF folder. The last
compression pass, int8 (per-row absmax) embeddings / LM head, is measured on the bundle and applied only when
it changes no validation item; `bundle.json` records every file's sha256 and size, the sizes per part, the
extensions, the evaluation the bundle passed (equal to the entering agent's, item for item) and its source.

Run: `agent-forge run` with `package` in the stages; test: `pytest tests/stages/package`.
"""


def run(ctx):
    """Stage entry point; imports the machinery only when the stage actually runs."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["run"]
