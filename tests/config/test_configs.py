"""Every YAML config shipped in configs/ validates, and names only implemented stages."""

from pathlib import Path

import pytest

from agent_forge.config import load_config
from agent_forge.stages import STAGES

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"tiny.yaml", "smoke.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path, monkeypatch):
    monkeypatch.setenv("SMOLLM2_GGUF", "/models/smollm2.gguf")
    cfg = load_config(path)
    assert all(stage in STAGES for stage in cfg.stage_list())


def test_smoke_runs_every_stage_that_tiny_runs():
    tiny, smoke = load_config(CONFIGS[0].parent / "tiny.yaml"), load_config(CONFIGS[0].parent / "smoke.yaml")
    assert smoke.stage_list() == tiny.stage_list()
