"""Stage 4.3 ADAS: search the agent's design (thinking, dispatch, tools, votes, refinement, retries, early
exit, and optionally generated code run in a sandbox) and write `adas_optimized_model/`."""

from .stage import run

__all__ = ["run"]
