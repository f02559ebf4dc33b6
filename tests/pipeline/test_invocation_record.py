"""The manifest's history records, per invocation, the torch thread count the run computed with and its command."""

from __future__ import annotations

import io
import shlex

import torch
from rich.console import Console

from agent_forge.pipeline import Manifest, run_pipeline
from agent_forge.pipeline.manifest import command_line
from agent_forge.pipeline.report import load_run, markdown_report
from pipeline_toy_stages import TOY_STAGES, toy_config


def _run(cfg, **kwargs):
    console = Console(file=io.StringIO(), width=200, color_system=None)
    return run_pipeline(cfg, stage_fns=TOY_STAGES, console=console, **kwargs)


def test_command_line_is_written_as_typed():
    assert command_line(["/usr/local/bin/agent-forge", "run", "--config", "smoke", "name=a b"]) == \
        "agent-forge run --config smoke 'name=a b'"
    assert command_line(["/x/agent_forge/cli.py", "run", "threads=1"]) == "agent-forge run threads=1"
    assert command_line(["/x/agent_forge/cli/__main__.py", "run"]) == "agent-forge run"  # python -m agent_forge.cli
    assert command_line(["/usr/bin/pytest", "-k", "x y"]) == "/usr/bin/pytest -k 'x y'"


def test_each_invocation_records_its_threads_and_command(tmp_path):
    try:
        run_dir = _run(toy_config(tmp_path, "threads", threads=1), until="evomerge",
                       command="agent-forge run --until evomerge threads=1")
        created = Manifest.load(run_dir).history[0]
        assert (created["event"], created["threads"]) == ("created", 1)
        assert created["command"] == "agent-forge run --until evomerge threads=1"

        # resumed with two threads (an execution setting: the same run); the default command is this process's
        _run(toy_config(tmp_path, "threads", threads=2), resume=True)
        resumed = Manifest.load(run_dir).history[-1]
        assert (resumed["event"], resumed["threads"]) == ("resumed", 2) == ("resumed", torch.get_num_threads())
        assert resumed["command"] == command_line() and shlex.split(resumed["command"])
    finally:
        torch.set_num_threads(1)  # tests run on one thread (conftest)

    text = markdown_report(load_run(run_dir))
    assert "`agent-forge run --until evomerge threads=1` (1 torch thread)" in text
    assert f"`{command_line()}` (2 torch threads)" in text
    assert text.index("Computed by") < text.index("trajectory: suite accuracy")
