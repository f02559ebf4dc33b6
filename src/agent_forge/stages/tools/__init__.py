"""Stage 4.2 (tools): the agent learns to call a calculator and to search its memory, and when not to.

The world's knowledge base is loaded into a persistent memory store (SQLite, BM25 + MiniLM vectors) that
travels with the agent; the agent's vocabulary gains the tool-call markers. Where the entering agent is below
`tools.call_below` on a level of a tool domain (arithmetic: calculator; facts: memory search), it is trained
on traces of tool use whose responses come from executing the calls; everywhere else on its own verified
answers, with no call. A short policy-gradient phase then runs with the tools executing in the loop (reward
from the verifier; the loss skips the runtime's responses). The report compares each level with and without
tools and the share of answers that call a tool.

Run: `agent-forge run` with `tools` in the stages; test: `pytest tests/stages/tools`.
"""


def run(ctx):
    """Stage entry point; imports the training machinery only when the stage actually runs."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["run"]
