"""The `agent-forge` command: run the pipeline, evaluate a model, show a run's status, chat with a model.

    agent-forge run [--config FILE] [--until STAGE] [--resume] [key.path=value ...]
    agent-forge sweep [--config FILE] --seeds 0-4 [--until STAGE] [--resume] [--report-only] [key.path=value ...]
    agent-forge eval MODEL [--domains arithmetic,strings] [--levels 1-4] [--n 20] [--method fast|generate]
    agent-forge status RUN_DIR
    agent-forge report RUN_OR_SWEEP [--markdown] [--html PATH]
    agent-forge chat MODEL [--prompt TEXT] [--show-thoughts] [--max-new-tokens N]
    agent-forge serve RUN_OR_AGENT [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-batch N]
                  [--log-db PATH | --log-url URL | --no-log] [--retention-days D] [--retention-rows N] [--redact S]
    agent-forge stages
    agent-forge config show [--config FILE] [key.path=value ...]
    agent-forge config reference            (the text of docs/config.md)

Anything the user can get wrong (config, paths, stage names, damaged models, bad options) ends with one line
`error: <what is wrong>` on stderr and exit code 2, never a traceback. Ctrl-C exits with 130; an interrupted
`run` is left resumable with `--resume`. Heavy layers (torch, transformers, the stages) are imported inside
the commands, so `status` and error reporting stay fast.

Exercise: `agent-forge --help`, or `python -m pytest tests/test_cli.py`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from .errors import ForgeError

try:  # recent typer ships its own copy of click, whose exceptions are distinct classes
    from typer import Abort
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import Abort, ClickException, NoArgsIsHelpError

USER_ERROR = 2
INTERRUPTED = 130


def _fail(message: str, code: int = USER_ERROR) -> None:
    first_line = " ".join(str(message).split("\n")).strip()
    typer.echo(f"error: {first_line}", err=True)
    sys.exit(code)


class _OneLineErrorGroup(TyperGroup):
    """The command group, reporting user errors and usage errors as one `error:` line instead of a traceback/box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
        except ForgeError as exc:
            _fail(str(exc))
        except NoArgsIsHelpError as exc:
            # rich help is printed while the exception is built; plain help is its message
            message = exc.format_message()
            if message.strip():
                typer.echo(message)
            sys.exit(0)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(exc.format_message() + hint, exc.exit_code)
        except Abort:
            _fail("aborted", INTERRUPTED)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=_OneLineErrorGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Forge one compact agent model from three specialised base models, measuring every step.",
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"agent-forge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Forge one compact agent model from three specialised base models, measuring every step."""


# ---------------------------------------------------------------------------------------------------- run


def default_config_path() -> Path:
    """The packaged `tiny` config (`agent_forge/configs/tiny.yaml`), what `run` uses without --config."""
    from .config import DEFAULT_CONFIG, resolve_config

    return resolve_config(DEFAULT_CONFIG)


@app.command()
def run(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Config overrides key.path=value, e.g. name=try2 seed_stage.pretrain.steps=10."
    ),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name: tiny (the default), smoke, ..."
    ),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage (`agent-forge stages` lists them)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished run, redoing any half-finished stage."),
) -> None:
    """Run the pipeline into runs/<name>/ (see `agent-forge status` for its progress).

    Re-running a finished run does nothing.

    An unfinished run, or one made with a different config, is only continued with --resume, which keeps the
    finished stages and redoes any half-finished one; otherwise choose a new name=... .
    """
    from .config import DEFAULT_CONFIG, load_config, resolve_config
    from .pipeline import run_dir_for, run_pipeline, status_view
    from .pipeline.logfile import quiet_libraries

    config_path = resolve_config(config) if config else default_config_path()
    cfg = load_config(config_path, list(overrides or []))
    target = run_dir_for(cfg)
    console = Console()
    which = "" if config else f" (the default, {DEFAULT_CONFIG})"
    # one line whatever the width, so that it can be found (and copied) as it is
    console.print(f"config {config_path.resolve()}{which} -> run directory {target}", markup=False, highlight=False,
                  soft_wrap=True)
    quiet_libraries()
    try:
        run_dir = run_pipeline(cfg, until=until, resume=resume, console=console)
    except KeyboardInterrupt:
        again = ["agent-forge run"] + ([f"--config {config}"] if config else []) + list(overrides or []) + ["--resume"]
        typer.echo(f"interrupted; the run is resumable: {' '.join(again)}", err=True)
        raise typer.Exit(INTERRUPTED) from None
    console.print(status_view(run_dir))


@app.command()
def sweep(
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides key.path=value, as `run` takes them."),
    seeds: str = typer.Option(..., "--seeds", help="Seeds to run: a range or a list, e.g. 0-4 or 0,2,5."),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name: tiny (the default), smoke, ..."
    ),
    until: Optional[str] = typer.Option(None, "--until", help="Stop every seed's run after this stage."),
    resume: bool = typer.Option(False, "--resume", help="Passed to every seed's run (see `run --help`)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only summarize the seeds' existing runs."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as markdown (for the README)."),
) -> None:
    """Run the pipeline once per seed (runs <name>-seed<k>) and report every stage's effect across the seeds.

    Writes runs/<name>-sweep/sweep.json; `agent-forge report runs/<name>-sweep` shows the table again.
    """
    from .pipeline.logfile import quiet_libraries
    from .pipeline.sweep import run_sweep

    quiet_libraries()
    console = Console()
    try:
        data = run_sweep(config, list(overrides or []), seeds, until=until, resume=resume, report_only=report_only,
                         console=console)
    except KeyboardInterrupt:
        typer.echo("interrupted; the sweep's runs are resumable: add --resume", err=True)
        raise typer.Exit(INTERRUPTED) from None
    _print_sweep(data, markdown)


def _print_sweep(data: dict, markdown: bool) -> None:
    from .pipeline.report_sweep import markdown_sweep, rich_sweep

    if markdown:
        typer.echo(markdown_sweep(data), nl=False)
        return
    console = Console()
    for renderable in rich_sweep(data):
        console.print(renderable)


# --------------------------------------------------------------------------------------------------- stages


def stage_summaries() -> dict[str, str]:
    """Each registered stage (run order) with the first line of its package's docstring, read without importing it."""
    import ast
    import importlib.util

    from .registry import STAGES

    summaries = {}
    for name, target in STAGES.items():
        module = target.split(":")[0]
        spec = importlib.util.find_spec(module)
        text = ""
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
            text = doc.strip().splitlines()[0] if doc.strip() else ""
        summaries[name] = text
    return summaries


@app.command()
def stages() -> None:
    """List the pipeline's stages in run order, one line each (the names `stages=` and `--until` take)."""
    from .registry import PLANNED_STAGES

    summaries = stage_summaries()
    width = max(len(name) for name in [*summaries, *PLANNED_STAGES])
    for name, summary in summaries.items():
        typer.echo(f"{name:<{width}}  {summary}")
    if PLANNED_STAGES:
        typer.echo(f"{'':<{width}}  planned, not implemented yet: {', '.join(PLANNED_STAGES)}")


# --------------------------------------------------------------------------------------------------- config

config_app = typer.Typer(
    cls=TyperGroup, no_args_is_help=True, add_completion=False,
    help="Explain the configuration: the resolved config with descriptions, or the full reference.",
)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides key.path=value, as `run` takes them."),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name (default: tiny, as `run`)."
    ),
) -> None:
    """Print the config `run` would use (same --config and overrides) as YAML, each key with its description
    and default."""
    from .config import load_config, resolve_config
    from .config.reference import show_config

    config_path = resolve_config(config) if config else default_config_path()
    cfg = load_config(config_path, list(overrides or []))
    given = f" with {' '.join(overrides)}" if overrides else ""
    typer.echo(f"# config {config_path.resolve()}{given}; config hash {cfg.digest()}")
    typer.echo(show_config(cfg), nl=False)


@config_app.command("reference")
def config_reference() -> None:
    """Print the reference of every config key as markdown (docs/config.md is this output)."""
    from .config.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)


# --------------------------------------------------------------------------------------------------- status


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run directory, or a run name under runs/.")) -> None:
    """Show each stage of a run (status, duration or time so far, headline metrics) and the models it wrote."""
    from .pipeline import MANIFEST_NAME, status_view

    if not (run_dir / MANIFEST_NAME).exists() and (Path("runs") / run_dir / MANIFEST_NAME).exists():
        run_dir = Path("runs") / run_dir
    Console().print(status_view(run_dir))


# --------------------------------------------------------------------------------------------------- report


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A run directory, or a run name under runs/."),
    markdown: bool = typer.Option(False, "--markdown", help="Print markdown (for pasting into a README) instead of tables."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report here instead of <run>/report.html."),
) -> None:
    """Show a run's trajectory (suite accuracy entering and leaving each stage) and each stage's own tables.

    Always writes a self-contained HTML page with plots (<run>/report.html unless --html is given). For a sweep
    (runs/<name>-sweep) it shows the table of stage effects across seeds instead, recomputed from its runs.
    """
    from .pipeline.report import load_run, markdown_report, rich_report, write_html
    from .pipeline.sweep import is_sweep_dir, read_sweep

    if is_sweep_dir(run_dir):
        _print_sweep(read_sweep(run_dir), markdown)
        return
    data = load_run(run_dir)
    if markdown:
        typer.echo(markdown_report(data))
    else:
        console = Console()
        for renderable in rich_report(data):
            console.print(renderable)
    written = write_html(data, html)
    typer.echo(f"wrote {written}", err=markdown)


# ----------------------------------------------------------------------------------------------------- eval


def parse_levels(spec: str) -> list[int]:
    """`"1-4"`, `"1,3,5"`, `"2-3,7"` -> sorted unique levels, each in 1..10; ForgeError otherwise."""
    levels: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ForgeError(f"cannot read levels {spec!r}; use e.g. 1-4 or 1,3,5")
        low, high = int(match[1]), int(match[2] or match[1])
        if not 1 <= low <= high <= 10:
            raise ForgeError(f"levels must lie in 1-10 (low to high), got {part!r}")
        levels.update(range(low, high + 1))
    if not levels:
        raise ForgeError("no levels given")
    return sorted(levels)


def parse_names(values: list[str] | None) -> list[str]:
    """Repeated and/or comma-separated names, in order, without duplicates."""
    names: list[str] = []
    for value in values or []:
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name not in names:
                names.append(name)
    return names


def _existing_model(model: str) -> str:
    if not Path(model).expanduser().exists():
        raise ForgeError(f"model not found: {model}")
    return model


def _writable_file(path: Path, option: str) -> Path:
    """A file path whose folder exists (nothing is created for the user); ForgeError otherwise."""
    path = path.expanduser()
    if path.is_dir():
        raise ForgeError(f"{option} {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ForgeError(f"{option} {path}: folder {path.parent} does not exist")
    return path


def _loading_agent(model: str, device: str, dtype: str):
    """`load_agent` with library noise off; a GGUF file (dequantized, slow) says so first, on stderr."""
    from .models import load_agent
    from .pipeline.logfile import quiet_libraries

    quiet_libraries()
    if Path(model).suffix.lower() == ".gguf" and Path(model).expanduser().is_file():
        typer.echo(f"loading {model} (GGUF, dequantizing)...", err=True)
    return load_agent(model, device=device, dtype=dtype)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise ForgeError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@app.command("eval")
def eval_command(
    model: str = typer.Argument(..., help="A Hugging Face model folder or a .gguf file."),
    domains: Optional[list[str]] = typer.Option(None, "--domains", "-d", help="Domains (repeat or comma-separate); default all."),
    levels: str = typer.Option("1-10", "--levels", "-l", help="Levels, e.g. 1-4 or 1,3,5."),
    n: int = typer.Option(20, "--n", min=1, help="Tasks per domain and level."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    method: str = typer.Option("fast", "--method", help="fast (one teacher-forced pass) or generate (decode and verify)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the task streams."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    experts: str = typer.Option("auto", "--experts", help="Expert vectors: auto (dispatch), off, or an expert's name."),
) -> None:
    """Evaluate a model on the task suites and print accuracy by domain and level."""
    from .tasks import DOMAINS, SPLITS

    _existing_model(model)
    if json_out is not None:
        json_out = _writable_file(json_out, "--json")
    split = _choice(split, tuple(SPLITS), "--split")
    method = _choice(method, ("fast", "generate"), "--method")
    level_list = parse_levels(levels)
    domain_list = parse_names(domains) or list(DOMAINS)
    unknown = [d for d in domain_list if d not in DOMAINS]
    if unknown:
        raise ForgeError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(DOMAINS)}")

    from .evaluation.table import accuracy_grid
    from .tasks import task_grid
    from .utils import configure_threads

    configure_threads(threads)
    console = Console()
    try:
        # every extension restored: a BitNet checkpoint is scored ternary, a packed export through its kernel
        agent = _loading_agent(model, device, dtype)
        tasks = task_grid(domain_list, level_list, split, n, seed)
        console.print(f"{model}: {len(tasks)} {split} tasks, method {method}", markup=False)
        report = _evaluate_with_experts(agent, tasks, experts, method=method, batch_size=batch_size, console=console)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(INTERRUPTED) from None

    console.print(accuracy_grid(report.by_domain_level, report.by_domain, level_list))
    loglik = f"; mean answer log-likelihood {report.mean_loglik:.3f}" if method == "fast" else ""
    console.print(f"overall accuracy {report.accuracy:.1f}% over {len(tasks)} tasks{loglik}")
    if json_out is not None:
        from .utils import atomic_write_json

        summary: dict[str, Any] = {
            "model": model, "split": split, "method": method, "n_per_level": n, "seed": seed,
            "domains": domain_list, "levels": level_list, **report.to_dict(),
        }
        atomic_write_json(json_out, summary)
        console.print(f"wrote {json_out}", markup=False)


def _set_experts(agent, mode: str):
    """The agent's expert set with `--experts` applied (None when the agent has none or mode is off)."""
    found = agent.extensions.get("experts")
    if found is None:
        if mode not in ("auto", "off"):
            raise ForgeError(f"--experts {mode}: this model has no expert vectors")
        return None
    if mode not in ("auto", "off") and mode not in found.experts:
        raise ForgeError(f"--experts: no expert named {mode!r}; this model has {', '.join(sorted(found.experts))}")
    found.mode = mode
    return found


def _evaluate_with_experts(agent, tasks, mode: str, *, method: str, batch_size: int, console):
    """`evaluate_agent` with `--experts` applied; says how dispatch split the tasks."""
    from .evaluation import evaluate_agent
    from .evaluation.report import dispatch_groups

    if _set_experts(agent, mode) is not None and mode != "off":
        groups = dispatch_groups(agent, [t.prompt for t in tasks])
        if groups is not None:
            console.print("experts: " + ", ".join(f"{k or 'base'} {len(v)}" for k, v in groups[1].items()), markup=False)
    return evaluate_agent(agent, tasks, method=method, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------------- chat


def _strip_special(text: str, tokenizer, keep: tuple[str, ...]) -> str:
    for token in getattr(tokenizer, "all_special_tokens", []):
        if token and token not in keep:
            text = text.replace(token, "")
    return text


def render_reply(reply, agent, show_thoughts: bool) -> Any:
    """A reply as rich text: thoughts dimmed (when shown), special tokens removed, never an empty line."""
    from rich.text import Text

    from .inference import split_thoughts

    shown = Text()
    if agent.thinks:
        shown.append(reply.text)
        if show_thoughts and reply.thoughts:
            shown.append("  [thoughts: " + " | ".join(t.strip() for t in reply.thoughts) + "]", style="dim italic")
    else:
        # a model without a head may still write delimiter spans of its own: show them as thoughts
        from .models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT

        text = _strip_special(reply.text, agent.tokenizer, keep=(START_OF_THOUGHT, END_OF_THOUGHT))
        for piece, is_thought in split_thoughts(text):
            if not is_thought:
                shown.append(piece)
            elif show_thoughts:
                shown.append(f"[thought: {piece.strip()}] ", style="dim italic")
    if not shown.plain.strip():
        shown = Text("(empty reply)", style="dim")  # the model ended its turn at once; say so rather than print nothing
    return shown


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def example_prompts(tokenizer=None, seed: int = 0) -> dict[str, str]:
    """One level-1 training prompt per task domain (`agent_forge.tasks.DOMAINS`), as a user would type it.

    With a tokenizer, a domain whose example it cannot spell (characters outside a character-level
    vocabulary) is left out.
    """
    from .tasks import DOMAINS, make_tasks

    unknown = getattr(tokenizer, "unk_token_id", None) if tokenizer is not None else None
    examples = {}
    for domain in DOMAINS:
        prompt = make_tasks(domain, 1, "train", 1, seed)[0].prompt
        if unknown is not None and unknown in tokenizer(prompt, add_special_tokens=False)["input_ids"]:
            continue
        examples[domain] = prompt
    return examples


@app.command()
def chat(
    model: str = typer.Argument(..., help="A Hugging Face model folder or a .gguf file."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this one prompt and exit."),
    show_thoughts: bool = typer.Option(False, "--show-thoughts", help="Also print the model's thought spans."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads; 0 keeps torch's default."),
    experts: str = typer.Option("auto", "--experts", help="Expert vectors: auto (dispatch), off, or an expert's name."),
) -> None:
    """Talk to a model: one reply per line typed (each line is answered on its own); /exit or EOF quits.

    On start it shows one example prompt per task domain: the formats the forged models were trained on.
    """
    from .inference import answer
    from .utils import configure_threads

    _existing_model(model)
    configure_threads(threads)
    agent = _loading_agent(model, device, dtype)
    expert_set = _set_experts(agent, experts)

    def reply(text: str):
        # raw text (special tokens kept) so that delimiter spans of a model without a head can be shown
        result = answer(agent, [text], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=1,
                        keep_special_tokens=True)
        shown = render_reply(result[0], agent, show_thoughts)
        if expert_set is not None and expert_set.last:
            c = expert_set.last[0]
            shown.append(f"  [expert: {c.expert or 'base'}, confidence {c.confidence:.2f}]", style="dim")
        return shown

    console = Console(highlight=False)
    if prompt is not None:
        console.print(reply(prompt))
        return
    interactive = _stdin_is_terminal()
    if interactive:
        console.print(f"chatting with {model}; /exit or Ctrl-D to quit", markup=False)
        console.print("prompts it understands (one per task domain):", markup=False)
        for domain, example in example_prompts(agent.tokenizer).items():
            console.print(f"  {domain:<11} {example}", markup=False)
    try:
        while True:
            if interactive:
                console.print("[bold]you>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                break
            text = line.strip()
            if text in {"/exit", "/quit"}:
                break
            if text:
                console.print(reply(text))
    except KeyboardInterrupt:
        console.print()


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
    from .interactions import resolve_redactions
    from .serve import ServeSettings, resolve_api_keys, serve
    from .serve.source import serving_defaults
    from .utils import configure_threads

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
    from .models.formats.gguf_export.embedding import embedding_type as parse_embedding_type
    from .models.formats.gguf_export.ternary import ternary_type as parse_ternary_type
    from .serve.source import MANIFEST, resolve_agent_source

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
    from .models.formats.gguf_export import export_gguf

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
    from .learning import LearnSettings
    from .learning import learn as run_learn
    from .utils import configure_threads

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
    from .learning import rollback as run_rollback

    run_rollback(target, version, say=typer.echo)


def main() -> None:  # pragma: no cover - `python -m agent_forge.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
