"""`agent-forge serve`'s interaction-log options: bad ones are one `error:` line before anything binds."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent_forge.cli import app

runner = CliRunner()


@pytest.mark.parametrize("options, message", [
    (["--log-db", "{tmp}", "--port", "0"], "error: the interaction log {tmp} is a directory"),
    (["--log-db", "{tmp}/x.sqlite", "--log-url", "postgresql://a@b/c"], "error: give --log-db or --log-url, not both"),
    (["--log-db", "{tmp}/x.sqlite", "--retention-rows", "0"], "error: --retention-rows must be at least 1"),
    (["--log-db", "{tmp}/x.sqlite", "--retention-days", "-1"], "error: --retention-days must be positive"),
    (["--log-db", "{tmp}/x.sqlite", "--redact", "re:(open"], "error: --redact 're:(open' is not a valid regular"),
    (["--log-url", "mysql://x/y"], "error: unknown interaction log"),
    (["--log-db", "{tmp}/x.sqlite", "--log-sync", "sometimes"], "error: --log-sync must be one of full, normal"),
])
def test_bad_log_options_are_one_line(tool_agent_path, tmp_path, options, message):
    result = runner.invoke(app, ["serve", str(tool_agent_path), *[o.format(tmp=tmp_path) for o in options]])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message.format(tmp=tmp_path)) and result.output.count("\n") == 1, result.output
