"""The typer application behind `agent-forge`, its one-line error handling, and the helpers its commands share.

Every command module (`run_commands`, `model_commands`, `deploy_commands`) registers its commands on `app`;
`agent_forge.cli` imports them all. A user error (`ForgeError`, a bad option) ends as one `error: ...` line on
stderr with exit code 2, never a traceback.
"""


from __future__ import annotations

import re
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from ..errors import ForgeError

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
        from .. import __version__

        typer.echo(f"agent-forge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Forge one compact agent model from three specialised base models, measuring every step."""



def default_config_path() -> Path:
    """The packaged `tiny` config (`agent_forge/configs/tiny.yaml`), what `run` uses without --config."""
    from ..config import DEFAULT_CONFIG, resolve_config

    return resolve_config(DEFAULT_CONFIG)



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
    from ..models import load_agent
    from ..pipeline.logfile import quiet_libraries

    quiet_libraries()
    if Path(model).suffix.lower() == ".gguf" and Path(model).expanduser().is_file():
        typer.echo(f"loading {model} (GGUF, dequantizing)...", err=True)
    return load_agent(model, device=device, dtype=dtype)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise ForgeError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value

