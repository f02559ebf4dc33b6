"""docs/config.md is generated (`agent-forge config reference > docs/config.md`) and must be current."""

from pathlib import Path

from typer.testing import CliRunner

from agent_forge.cli import app
from agent_forge.config.reference import REFERENCE_COMMAND, config_fields, reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_current():
    assert DOC.is_file(), f"docs/config.md is missing; run `{REFERENCE_COMMAND}`"
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        f"docs/config.md is stale (a config key, default or description changed); run `{REFERENCE_COMMAND}`"
    )


def test_the_command_prints_the_reference_with_every_key():
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.stdout == reference_markdown()
    for item in config_fields():
        assert f"`{item.key}`" in result.stdout
    assert "| `name` | str | `tiny` |" in result.stdout and "| `run_root` | path | `runs` |" in result.stdout
    assert "*(execution only)*" in result.stdout
