"""Every YAML config packaged in agent_forge/configs/ validates, names only implemented stages, and is
reachable by name (`agent-forge run --config smoke`)."""

from pathlib import Path

import pytest

from agent_forge.config import load_config, packaged_configs, resolve_config
from agent_forge.errors import ForgeError
from agent_forge.stages import STAGES

CONFIGS = packaged_configs()


def test_configs_exist():
    assert {"tiny", "smoke", "external-smollm2", "qwen2.5-1.5b-cluster"} <= set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_config_validates(name, monkeypatch):
    for var in ("SMOLLM2_GGUF", "QWEN_BASE", "QWEN_INSTRUCT", "QWEN_CODER", "QWEN_MATH", "FORGE_RUNS"):
        monkeypatch.setenv(var, f"/models/{var.lower()}")
    cfg = load_config(name)
    assert cfg == load_config(CONFIGS[name])
    assert all(stage in STAGES for stage in cfg.stage_list())


def test_smoke_runs_every_stage_that_tiny_runs():
    assert load_config("smoke").stage_list() == load_config("tiny").stage_list()


def test_a_name_resolves_to_the_packaged_file_and_a_path_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("smoke") == CONFIGS["smoke"]
    (tmp_path / "smoke").write_text("name: local\n")  # an existing file wins over the packaged name
    assert resolve_config("smoke") == Path("smoke")
    assert load_config("smoke").name == "local"
    with pytest.raises(ForgeError, match=r"config file not found: \./tiny$"):
        resolve_config("./tiny")  # a path separator makes it a path
    with pytest.raises(ForgeError, match=r"config file not found: configs/tiny\.yaml \(.*--config tiny\)"):
        load_config("configs/tiny.yaml")


def test_a_bad_name_lists_the_packaged_configs():
    with pytest.raises(ForgeError) as err:
        resolve_config("nope")
    assert str(err.value) == f"no config named 'nope' (packaged: {', '.join(sorted(CONFIGS))})"
