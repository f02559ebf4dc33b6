"""Commands that deploy an agent and keep it learning: `serve`, `export`, `learn`, `rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ForgeError
from .app import _choice, _loading_agent, _writable_file, app

# ---------------------------------------------------------------------------------------------------- serve


@app.command("serve")
def serve_command(
    source: str = typer.Argument(
        ..., help="A run directory (serves its last finished stage's model), an agent folder or a .gguf file."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; beyond loopback only with an API key."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    api_key: Optional[list[str]] = typer.Option(
        None, "--api-key", help="Require 'Authorization: Bearer KEY' (repeatable); also read from AGENT_FORGE_API_KEY."
    ),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model id clients ask for (default: the run's or folder's name)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Requests decoded together (1 = one at a time)."),
    max_concurrent: int = typer.Option(256, "--max-concurrent", min=1, help="Requests in flight; more get 429."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1, help="Larger request bodies get 413."),
    max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens", min=1, help="Default: the model's context."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="The largest max_tokens a request may ask for."),
    request_timeout: float = typer.Option(300.0, "--request-timeout", min=0.001, help="Seconds before a request gets 408."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: critical, error, warning, info, debug."),
    log_db: Optional[Path] = typer.Option(
        None, "--log-db", help="SQLite file of the interaction log (default: interactions.sqlite in the run directory, "
        "the version store, or beside the agent)."),
    log_url: Optional[str] = typer.Option(
        None, "--log-url", help="Log interactions to PostgreSQL instead (postgresql://user@host:port/db; needs the "
        "postgres extra)."),
    no_log: bool = typer.Option(False, "--no-log", help="Keep no interaction log (no feedback, empty dashboard, no canary)."),
    log_sync: str = typer.Option("normal", "--log-sync", help="SQLite synchronous mode: normal (a logged row survives "
                                 "a killed server) or full (also a power cut; an fsync per commit)."),
    retention_days: Optional[float] = typer.Option(None, "--retention-days", help="Delete logged interactions older than this."),
    retention_rows: Optional[int] = typer.Option(None, "--retention-rows", help="Keep at most this many logged interactions."),
    redact: Optional[list[str]] = typer.Option(
        None, "--redact", help="A secret never written to the log (repeatable; 're:<regex>' for a pattern; also "
        "AGENT_FORGE_REDACT, comma-separated). API keys are always redacted."),
    facts_world: Optional[int] = typer.Option(
        None, "--facts-world", help="Knowledge-base seed that facts prompts are verified against (default: the run's seed)."),
    canary_every: float = typer.Option(3600.0, "--canary-every", min=0, help="Seconds between canary runs (0: only at "
                                       "start and on a new version)."),
    canary_size: int = typer.Option(6, "--canary-size", min=1, help="Canary tasks per domain."),
    canary_tolerance: float = typer.Option(5.0, "--canary-tolerance", min=0, help="Points below the best of the "
                                           "recent canary runs that count as falling."),
    no_canary: bool = typer.Option(False, "--no-canary", help="No drift watch."),
) -> None:
    """Serve an agent over an OpenAI-compatible API (chat, completions, streaming, tools) with dynamic batching.

    Every answered request is logged (SQLite by default); POST /v1/feedback takes feedback on a response id,
    GET /dashboard shows live charts, and a canary set watches for drift.
    """
    from ..interactions import resolve_redactions
    from ..serve import ServeSettings, resolve_api_keys, serve
    from ..serve.source import serving_defaults
    from ..utils import configure_threads

    if log_db is not None and log_url is not None:
        raise ForgeError("give --log-db or --log-url, not both")
    defaults = serving_defaults(source)
    log_target = None if no_log else (log_url or str(log_db or defaults["log_path"]))
    configure_threads(threads)
    settings = ServeSettings(
        host=host, port=port, api_keys=resolve_api_keys(api_key or []), model_name=model_name, max_batch=max_batch,
        max_concurrent=max_concurrent, max_body_bytes=max_body_bytes, max_prompt_tokens=max_prompt_tokens,
        max_tokens=max_tokens, request_timeout_s=request_timeout, device=device, dtype=dtype,
        log_target=log_target, log_synchronous=_choice(log_sync, ("full", "normal"), "--log-sync").upper(),
        retention_days=retention_days, retention_rows=retention_rows, redact=resolve_redactions(redact or []),
        facts_world=facts_world if facts_world is not None else defaults["facts_world"],
        version_store=str(defaults["version_store"]) if defaults["version_store"] else None,
        canary_every_s=None if (no_canary or log_target is None) else canary_every, canary_per_domain=canary_size,
        canary_tolerance=canary_tolerance,
    )
    serve(source, settings, log_level=_choice(log_level, ("critical", "error", "warning", "info", "debug"), "--log-level"),
          say=lambda line: typer.echo(line, err=True))


# ---------------------------------------------------------------------------------------------------- export


@app.command("export")
def export_command(
    source: str = typer.Argument(..., help="A run directory (exports its final agent, as `serve` picks it) or an agent folder."),
    gguf_file: Optional[Path] = typer.Option(None, "--gguf", help="Write a llama.cpp GGUF file (llama architecture) here."),
    ternary_type: str = typer.Option("TQ2_0", "--ternary-type", help="GGUF type of ternary weights: TQ2_0 (2.06 "
                                     "bits/weight) or TQ1_0 (1.69); rows that do not fit its 256-value block use Q4_0."),
    embedding_type: str = typer.Option("f32", "--embedding-type", help="GGUF type of the embedding (and an untied LM "
                                       "head): f32 (exact), f16 or q8_0 (8.5 bits/value, a quarter of f32's size)."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip reading the file back and comparing logits."),
) -> None:
    """Export an agent for another runtime. `--gguf OUT.gguf`: one GGUF for llama.cpp (ternary layers as TQ2_0 with
    exact scales, the tokenizer, the chat template), read back and compared logit by logit with the agent.

    Needs a standard (byte-level BPE) tokenizer, i.e. the real-model profile; what llama.cpp cannot express is
    refused or noted in one line each.
    """
    from ..models.formats.gguf_export.embedding import embedding_type as parse_embedding_type
    from ..models.formats.gguf_export.ternary import ternary_type as parse_ternary_type
    from ..serve.source import MANIFEST, resolve_agent_source

    if gguf_file is None:
        raise ForgeError("give the format to export: --gguf OUT.gguf (the only export so far)")
    target = _writable_file(gguf_file, "--gguf")
    if target.suffix.lower() != ".gguf":
        raise ForgeError(f"--gguf {target}: the file name must end in .gguf")
    parse_ternary_type(ternary_type)
    parse_embedding_type(embedding_type)
    if not Path(source).expanduser().exists() and not (Path("runs") / source / MANIFEST).is_file():
        raise ForgeError(f"nothing to export at {source}: give a run directory or an agent folder")
    path, name = resolve_agent_source(source)
    agent = _loading_agent(str(path), "cpu", "float32")  # the export reads fp32 weights and checks on the CPU
    from ..models.formats.gguf_export import export_gguf

    result = export_gguf(agent, target, ternary=ternary_type, embedding=embedding_type, check=not no_check, name=name)
    for line in result.lines():
        typer.echo(line)


@app.command()
def learn(
    target: str = typer.Argument(..., help="A run directory (or run name under runs/) or a version store."),
    cycles: int = typer.Option(30, "--cycles", min=1, help="Learning cycles (policy gradient + demonstrations)."),
    lr: float = typer.Option(2e-3, "--lr", min=1e-9, help="Learning rate of the cycles."),
    heldout: int = typer.Option(100, "--heldout", min=1, help="Held-out test tasks per logged (domain, level)."),
    suite_items: int = typer.Option(20, "--suite-items", min=1, help="Suite test tasks per domain and level."),
    max_suite_drop: float = typer.Option(1.0, "--max-suite-drop", min=0, help="Points the suite may lose."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    log_db: Optional[Path] = typer.Option(None, "--log-db", help="The interaction log (default: interactions.sqlite "
                                          "in the run directory or store)."),
) -> None:
    """Learn from the logged experience of a deployed agent; promote the new version if it passes the gate.

    Verified failures (their reference answers) and feedback corrections are demonstrations, verified
    successes are replay; policy-gradient cycles on the logged prompts (verifier reward, KL to the deployed
    version) make a candidate. It is promoted only if held-out accuracy on the logged task distribution
    improves and the full suite loses at most --max-suite-drop points; else it is kept with the reason.
    A killed learn resumes where it stopped.
    """
    from ..learning import LearnSettings
    from ..learning import learn as run_learn
    from ..utils import configure_threads

    configure_threads(threads)
    settings = LearnSettings(cycles=cycles, lr=lr, heldout_per_cell=heldout, suite_items=suite_items,
                             max_suite_drop=max_suite_drop, seed=seed, threads=threads)
    if log_db is not None and not log_db.is_file():
        raise ForgeError(f"no logged experience: {log_db} does not exist")
    run_learn(target, settings, say=typer.echo, log_target=str(log_db) if log_db else None)


@app.command()
def rollback(
    target: str = typer.Argument(..., help="A run directory (or run name under runs/) or a version store."),
    version: Optional[str] = typer.Argument(None, help="The version to serve (default: the one before the current)."),
) -> None:
    """Point the deployment back at an earlier version (a running server swaps to it)."""
    from ..learning import rollback as run_rollback

    run_rollback(target, version, say=typer.echo)

