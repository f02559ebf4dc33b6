"""Loading a config as a new user meets it: relative paths, bad files, duplicate keys, 0-step training, the
descriptions every key carries, and `config show`'s commented YAML."""

import pytest

from agent_forge.config import ForgeConfig, load_config, parse_yaml
from agent_forge.config.reference import config_fields, show_config
from agent_forge.errors import ForgeError


def test_relative_user_paths_are_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config("smoke", [
        "seed_stage.profile=external", "seed_stage.models={math: models/a.gguf, code: ./b, logic: ~/c}",
        "seed_stage.base=../base", "quietstar.text_files=[notes.txt]", "curriculum.mix.organic_paths=[data/x.jsonl]",
        "run_root=out",
    ])
    assert cfg.seed_stage.models == {"math": str(tmp_path / "models/a.gguf"), "code": str(tmp_path / "b"),
                                     "logic": str(tmp_path / "home/c")}
    assert cfg.seed_stage.base == str(tmp_path.parent / "base")
    assert cfg.quietstar.text_files == [str(tmp_path / "notes.txt")]
    assert cfg.curriculum.mix.organic_paths == [str(tmp_path / "data/x.jsonl")]
    assert cfg.run_root == str(tmp_path / "out")
    assert ForgeConfig().run_root == str(tmp_path / "runs")  # the default too
    # absolute paths are kept, and loading the resolved config again changes nothing
    again = ForgeConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    with pytest.raises(ForgeError, match="path must not be empty"):
        load_config(None, ["quietstar.text_files=['']"])


@pytest.mark.parametrize("content, fragments", [
    ("", ["is empty"]),
    ("# nothing but a comment\n", ["is empty"]),
    ("name: a\nseed: 1\nname: b\n", ["duplicate key 'name'", "line 3", "first on line 1"]),
    ("seed_stage:\n  pretrain: {steps: 3, steps: 4}\n", ["duplicate key 'steps'"]),
    ("evomerge:\n  generations: 2\nevomerge:\n  patience: 1\n", ["duplicate key 'evomerge'"]),
])
def test_bad_config_files(tmp_path, content, fragments):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ForgeError) as err:
        load_config(path)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_binary_config_file_is_refused(tmp_path):
    for name, blob in [("png.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ("nul.yaml", b"name: x\n\x00\x00")]:
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ForgeError, match="not a text file"):
            load_config(path)


def test_merge_keys_may_be_overridden_and_duplicate_overrides_are_refused(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("seed_stage:\n  pretrain: &short {steps: 3, lr: 0.01}\n  finetune:\n    <<: *short\n    steps: 2\n")
    cfg = load_config(path)
    assert (cfg.seed_stage.finetune.steps, cfg.seed_stage.finetune.lr) == (2, 0.01)
    with pytest.raises(ForgeError, match="duplicate key 'a'"):
        load_config(None, ["seed_stage.models={a: x, a: y}"])


@pytest.mark.parametrize("key", ["seed_stage.pretrain", "seed_stage.finetune", "quietstar.train", "bitnet.train"])
def test_a_training_phase_of_zero_steps_is_refused(key):
    with pytest.raises(ForgeError) as err:
        load_config("smoke", [f"{key}.steps=0"])
    message = str(err.value)
    assert message.startswith(f"invalid config at {key}.steps:") and "at least 1 step" in message
    assert load_config("smoke", [f"{key}.steps=1"])  # one step is fine


def test_every_config_key_has_a_description():
    keys = list(config_fields())
    assert len(keys) > 150
    missing = [k.key for k in keys if not k.description.strip()]
    assert not missing, f"config keys without Field(description=...): {missing}"


def test_show_config_is_commented_yaml_that_loads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("smoke", ["threads=1", "quietstar.text_files=[a.txt]", "bitnet.norm_eps=1e-7"])
    text = show_config(cfg)
    assert parse_yaml(text) == cfg.model_dump(mode="json")
    lines = text.splitlines()
    assert all("  # " in line for line in lines)  # every key says what it is
    threads = next(line for line in lines if line.startswith("threads:"))
    assert threads.startswith("threads: 1  # torch CPU threads") and "(default: 0)" in threads
    assert "not in the config hash" in threads
    seed = next(line for line in lines if line.startswith("seed:"))
    assert seed.endswith("(default)")
    steps = next(line for line in lines if line.strip().startswith("steps: 20"))
    assert "(default: 900)" in steps  # a section's default comes from its parent (pretrain: 900, not required)
    run_root = next(line for line in lines if line.startswith("run_root:"))
    assert str(tmp_path / "runs") in run_root and "(default)" in run_root
    written = tmp_path / "shown.yaml"
    written.write_text(text)
    assert load_config(written) == cfg
