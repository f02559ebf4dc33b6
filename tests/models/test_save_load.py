"""save_model writes folders plain transformers loads with identical outputs, atomically; load_model reads them."""

import copy
import json
import multiprocessing
import os
import signal
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.models import add_special_tokens, load_model, prompt_format, save_model

THOUGHTS = ["<|startofthought|>", "<|endofthought|>"]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_round_trip_through_plain_transformers_with_special_tokens(tiny_model, tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    new_ids = add_special_tokens(tiny_model, tok, THOUGHTS, init_from="---")
    with torch.no_grad():  # make the new rows distinct, so that a mix-up of ids would show in the logits
        tiny_model.get_input_embeddings().weight[new_ids[1]] += 0.5
    save_model(tiny_model, tok, tmp_path / "m")

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    text = "1+2=<|startofthought|>ab<|endofthought|>3"
    ids = loaded_tok(text)["input_ids"]
    assert ids == tok(text)["input_ids"]
    assert loaded_tok.convert_tokens_to_ids(THOUGHTS) == new_ids
    assert sum(i in new_ids for i in ids) == 2  # each thought token stays one token
    assert torch.equal(_logits(model, ids), _logits(tiny_model, ids))
    assert torch.equal(model.get_input_embeddings().weight, tiny_model.get_input_embeddings().weight)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert set(THOUGHTS) <= set(loaded_tok.all_special_tokens)
    generation = GenerationConfig.from_pretrained(tmp_path / "m")
    assert generation.eos_token_id in (tok.eos_token_id, [tok.eos_token_id])
    assert generation.pad_token_id == tok.pad_token_id


def test_load_model_reads_saved_folder_and_applies_dtype(tiny_model, tiny_tokenizer, tmp_path):
    save_model(tiny_model, tiny_tokenizer, tmp_path / "m")
    model, tok = load_model(tmp_path / "m")
    assert not model.training and model.dtype == torch.float32 and next(model.parameters()).device.type == "cpu"
    ids = tok("abc\n")["input_ids"]
    assert torch.equal(_logits(model, ids), _logits(tiny_model, ids))
    assert prompt_format(tok).terminator_id == tiny_tokenizer.eos_token_id
    half, _ = load_model(str(tmp_path / "m"), dtype="bfloat16")
    assert half.dtype == torch.bfloat16


def test_untied_and_shared_tensors_save_correctly(tiny_tokenizer, tmp_path):
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    # sharing no config declares: safetensors cannot store it, so each name must get its own copy
    model.model.layers[1].mlp.up_proj.weight = model.model.layers[0].mlp.up_proj.weight
    save_model(model, tiny_tokenizer, tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ids = tiny_tokenizer("ab\n")["input_ids"]
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))
    assert loaded.lm_head.weight is not loaded.model.embed_tokens.weight


def test_failed_save_leaves_nothing_and_keeps_the_previous_model(tiny_model, tiny_tokenizer, tmp_path, monkeypatch):
    target = tmp_path / "m"

    class Boom(RuntimeError):
        pass

    def fail(*args, **kwargs):
        raise Boom("disk full")

    tok = copy.deepcopy(tiny_tokenizer)
    monkeypatch.setattr(tok, "save_pretrained", fail)  # dies after the weights were written
    with pytest.raises(Boom):
        save_model(tiny_model, tok, target)
    assert list(tmp_path.iterdir()) == []

    save_model(tiny_model, tiny_tokenizer, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with torch.no_grad():
        tiny_model.model.norm.weight += 1.0
    with pytest.raises(Boom):
        save_model(tiny_model, tok, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def _save_slowly(model, tokenizer, target, weights_written) -> None:
    """Child process: save, but stall after the weights are on disk and before the tokenizer is."""
    real = tokenizer.save_pretrained

    def stalled(*args, **kwargs):
        weights_written.set()
        time.sleep(60)
        return real(*args, **kwargs)

    tokenizer.save_pretrained = stalled
    save_model(model, tokenizer, target)


def test_killed_save_never_leaves_a_half_written_folder(tiny_model, tiny_tokenizer, tmp_path):
    """SIGKILL a real save while it is writing: the target must not exist, only a temporary sibling."""
    context = multiprocessing.get_context("fork")  # the child inherits the imported modules: starts instantly
    weights_written = context.Event()
    child = context.Process(
        target=_save_slowly, args=(tiny_model, copy.deepcopy(tiny_tokenizer), tmp_path / "dst", weights_written)
    )
    child.start()
    try:
        assert weights_written.wait(timeout=60)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert not (tmp_path / "dst").exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert (leftovers[0] / "model.safetensors").exists()  # the kill did land mid-save


# --- clear one-line errors -------------------------------------------------------------------------------------


def _saved(tiny_model, tiny_tokenizer, tmp_path):
    folder = tmp_path / "m"
    save_model(tiny_model, tiny_tokenizer, folder)
    return folder


def _one_line_error(source) -> str:
    with pytest.raises(ForgeError) as err:
        load_model(source)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_path_and_wrong_file_type(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope")
    (tmp_path / "weights.bin").write_bytes(b"x")
    assert "not a .gguf" in _one_line_error(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _one_line_error(tmp_path / "empty")


def test_truncated_safetensors(tiny_model, tiny_tokenizer, tmp_path):
    folder = _saved(tiny_model, tiny_tokenizer, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    assert "truncated" in _one_line_error(folder)
    weights.write_bytes(data[:5])
    assert "truncated" in _one_line_error(folder)


def test_corrupted_safetensors_header(tiny_model, tiny_tokenizer, tmp_path):
    folder = _saved(tiny_model, tiny_tokenizer, tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\x00garbage"
    weights.write_bytes(bytes(data))
    assert "corrupted" in _one_line_error(folder)


def test_folder_without_weights_or_with_missing_tensors(tiny_model, tiny_tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _saved(tiny_model, tiny_tokenizer, tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    assert "lack 1 tensor" in _one_line_error(folder)
    weights.unlink()
    assert "no weights" in _one_line_error(folder)


def test_unsupported_architecture_and_bad_config(tiny_model, tiny_tokenizer, tmp_path):
    folder = _saved(tiny_model, tiny_tokenizer, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "vit"}))
    assert "not a causal language model" in _one_line_error(folder)
    (folder / "config.json").write_text("{not json")
    assert "cannot read" in _one_line_error(folder)
