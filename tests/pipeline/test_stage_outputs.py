"""check_output: complete model folders pass; truncated, missing or unreadable parts are named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from agent_forge.pipeline import check_output


@pytest.fixture()
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": np.ones((8, 8), np.float32), "b": np.zeros(8, np.float32)}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text(json.dumps({"model": {}}))
    return folder


def test_complete_folder_passes(model_dir):
    assert check_output(model_dir) is None
    assert check_output(model_dir / "model.safetensors") is None


def test_truncated_safetensors_is_caught(model_dir):
    weights = model_dir / "model.safetensors"
    blob = weights.read_bytes()
    for cut in (4, 20, len(blob) - 1):
        weights.write_bytes(blob[:cut])
        assert "truncated" in check_output(model_dir) or "bytes but its header" in check_output(model_dir)
    weights.write_bytes(blob + b"\0")
    assert "header describes" in check_output(model_dir)


def test_broken_json_and_missing_parts_are_caught(model_dir, tmp_path):
    (model_dir / "tokenizer.json").write_text('{"model": ')
    assert "tokenizer.json is not valid JSON" in check_output(model_dir)
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "model.safetensors").unlink()
    assert "config.json but no weight files" in check_output(model_dir)
    assert "missing" in check_output(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "empty directory" in check_output(tmp_path / "empty")
    assert check_output(tmp_path / "nope", deep=False) is not None


def test_sharded_index_must_name_existing_shards(model_dir):
    (model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model.safetensors", "b": "model-00002.safetensors"}})
    )
    assert "missing shard" in check_output(model_dir)


def test_gguf_magic_and_shallow_check(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    assert "bad magic" in check_output(fake)
    assert check_output(fake, deep=False) is None  # not ours: only existence is checked


def test_leftover_temp_files_inside_a_folder_are_ignored(model_dir):
    (model_dir / "extra.json.tmp-1-abcd").write_text("{")
    assert check_output(model_dir) is None


def test_real_gguf_passes_and_truncated_gguf_is_caught(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((64, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert check_output(path) is None
    path.write_bytes(path.read_bytes()[:-100])
    assert "damaged GGUF" in check_output(path)
