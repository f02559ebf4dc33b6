"""The `agent-forge` command: run the pipeline, evaluate a model, show a run's status, chat with a model.

    agent-forge run [--config FILE] [--until STAGE] [--resume] [key.path=value ...]
    agent-forge eval MODEL [--domains arithmetic,strings] [--levels 1-4] [--n 20] [--method fast|generate]
    agent-forge status RUN_DIR
    agent-forge report RUN [--markdown] [--html PATH]
    agent-forge chat MODEL [--prompt TEXT] [--show-thoughts] [--max-new-tokens N]

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
            typer.echo(exc.ctx.get_help())
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
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished run, redoing any half-finished stage."),
) -> None:
    """Run the pipeline into runs/<name>/ (see `agent-forge status` for its progress).

    Re-running a finished run does nothing.

    An unfinished run, or one made with a different config, is only continued with --resume, which keeps the
    finished stages and redoes any half-finished one; otherwise choose a new name=... .
    """
    from .config import load_config, resolve_config
    from .pipeline import run_pipeline, status_table

    config_path = resolve_config(config) if config else default_config_path()
    cfg = load_config(config_path, list(overrides or []))
    console = Console()
    console.print(f"config: {config_path}", markup=False)
    try:
        run_dir = run_pipeline(cfg, until=until, resume=resume, console=console)
    except KeyboardInterrupt:
        again = ["agent-forge run"] + ([f"--config {config}"] if config else []) + list(overrides or []) + ["--resume"]
        typer.echo(f"interrupted; the run is resumable: {' '.join(again)}", err=True)
        raise typer.Exit(INTERRUPTED) from None
    console.print(status_table(run_dir))


# --------------------------------------------------------------------------------------------------- status


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run directory, or a run name under runs/.")) -> None:
    """Show each stage of a run: status, duration and headline metrics."""
    from .pipeline import MANIFEST_NAME, status_table

    if not (run_dir / MANIFEST_NAME).exists() and (Path("runs") / run_dir / MANIFEST_NAME).exists():
        run_dir = Path("runs") / run_dir
    Console().print(status_table(run_dir))


# --------------------------------------------------------------------------------------------------- report


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A run directory, or a run name under runs/."),
    markdown: bool = typer.Option(False, "--markdown", help="Print markdown (for pasting into a README) instead of tables."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report here instead of <run>/report.html."),
) -> None:
    """Show a run's trajectory (suite accuracy entering and leaving each stage) and each stage's own tables.

    Always writes a self-contained HTML page with plots (<run>/report.html unless --html is given).
    """
    from .pipeline.report import load_run, markdown_report, rich_report, write_html

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
) -> None:
    """Evaluate a model on the task suites and print accuracy by domain and level."""
    from .tasks import DOMAINS, SPLITS

    _existing_model(model)
    split = _choice(split, tuple(SPLITS), "--split")
    method = _choice(method, ("fast", "generate"), "--method")
    level_list = parse_levels(levels)
    domain_list = parse_names(domains) or list(DOMAINS)
    unknown = [d for d in domain_list if d not in DOMAINS]
    if unknown:
        raise ForgeError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(DOMAINS)}")

    from .evaluation import evaluate
    from .evaluation.table import accuracy_grid
    from .models import load_agent
    from .tasks import task_grid
    from .utils import configure_threads

    configure_threads(threads)
    console = Console()
    try:
        # every extension restored: a BitNet checkpoint is scored ternary, a packed export through its kernel
        agent = load_agent(model, device=device, dtype=dtype)
        tasks = task_grid(domain_list, level_list, split, n, seed)
        console.print(f"{model}: {len(tasks)} {split} tasks, method {method}", markup=False)
        report = evaluate(agent.model, agent.tokenizer, tasks, method=method, batch_size=batch_size)
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
) -> None:
    """Talk to a model: one reply per line typed (each line is answered on its own); /exit or EOF quits."""
    from .inference import answer
    from .models import load_agent
    from .utils import configure_threads

    _existing_model(model)
    configure_threads(threads)
    agent = load_agent(model, device=device, dtype=dtype)

    def reply(text: str):
        # raw text (special tokens kept) so that delimiter spans of a model without a head can be shown
        result = answer(agent, [text], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=1,
                        keep_special_tokens=True)
        return render_reply(result[0], agent, show_thoughts)

    console = Console(highlight=False)
    if prompt is not None:
        console.print(reply(prompt))
        return
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"chatting with {model}; /exit or Ctrl-D to quit")
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


def main() -> None:  # pragma: no cover - `python -m agent_forge.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
