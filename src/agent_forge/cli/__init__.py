"""The `agent-forge` command: run the pipeline, evaluate a model, show a run's status, chat with a model.

    agent-forge run [--config FILE] [--until STAGE] [--resume] [key.path=value ...]
    agent-forge sweep [--config FILE] --seeds 0-4 [--until STAGE] [--resume] [--report-only] [key.path=value ...]
    agent-forge eval MODEL [--domains arithmetic,strings] [--levels 1-4] [--n 20] [--method fast|generate]
    agent-forge status RUN_DIR
    agent-forge report RUN_OR_SWEEP [--markdown] [--html PATH]
    agent-forge chat MODEL [--prompt TEXT] [--show-thoughts] [--max-new-tokens N]
    agent-forge serve RUN_OR_AGENT [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-batch N]
                  [--log-db PATH | --log-url URL | --no-log] [--retention-days D] [--retention-rows N] [--redact S]
    agent-forge export RUN_OR_AGENT --gguf OUT.gguf [--ternary-type TQ2_0|TQ1_0] [--embedding-type f32|f16|q8_0]
    agent-forge learn RUN_OR_STORE [--cycles N]     agent-forge rollback RUN_OR_STORE [VERSION]
    agent-forge stages
    agent-forge config show [--config FILE] [key.path=value ...]
    agent-forge config reference            (the text of docs/config.md)

Anything the user can get wrong (config, paths, stage names, damaged models, bad options) ends with one line
`error: <what is wrong>` on stderr and exit code 2, never a traceback. Ctrl-C exits with 130; an interrupted
`run` is left resumable with `--resume`. Heavy layers (torch, transformers, the stages) are imported inside
the commands, so `status` and error reporting stay fast.

The commands live in three modules by what they work on (`run_commands`, `model_commands`,
`deploy_commands`), all registered on the one typer `app` of `app.py`.

Exercise: `agent-forge --help`, or `python -m pytest tests/test_cli.py`.
"""

from __future__ import annotations

# importing a command module registers its commands on `app`; --help lists them in this order
from . import run_commands  # noqa: F401,I001
from . import model_commands  # noqa: F401
from . import deploy_commands  # noqa: F401
from .app import INTERRUPTED, USER_ERROR, app, default_config_path, parse_levels, parse_names
from .model_commands import example_prompts, render_reply
from .run_commands import stage_summaries

__all__ = ["app", "main", "INTERRUPTED", "USER_ERROR", "default_config_path", "parse_levels", "parse_names",
           "example_prompts", "render_reply", "stage_summaries"]


def main() -> None:  # pragma: no cover - `python -m agent_forge.cli`
    app()
