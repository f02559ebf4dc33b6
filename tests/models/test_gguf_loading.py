"""Loading GGUF files: a tiny llama GGUF written here with the `gguf` package must load with the same logits.

The writer follows llama.cpp's conventions as transformers' reader expects them: tensors named
`token_embd`, `blk.N.attn_q`, ..., `output_norm`; the query/key rows permuted from the rotary halves layout
into interleaved pairs; no `output` tensor when the embeddings are tied; a byte-level ("gpt2") vocabulary.
"""

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.models import load_model, save_model

CONTROL = 3  # llama.cpp token type of special tokens
NORMAL = 1


def _interleave_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF keeps each head's rotary pairs as two halves; llama.cpp stores them as adjacent pairs."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def write_llama_gguf(model, tokenizer, path, *, quantize_linear: bool = False, architecture: str = "llama") -> None:
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny test llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if i in special else NORMAL for i in range(len(tokens))])
    # a character vocabulary has no merges; with equal scores the reader finds none to derive either
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)

    def put(name: str, tensor: torch.Tensor, permute_heads: int | None = None) -> None:
        array = tensor.detach().float().numpy()
        if permute_heads is not None:
            array = _interleave_rotary(array, permute_heads)
        if quantize_linear and array.ndim == 2:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))

    put("token_embd.weight", model.model.embed_tokens.weight)
    for i, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        put(f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight)
        put(f"blk.{i}.attn_q.weight", attn.q_proj.weight, cfg.num_attention_heads)
        put(f"blk.{i}.attn_k.weight", attn.k_proj.weight, cfg.num_key_value_heads)
        put(f"blk.{i}.attn_v.weight", attn.v_proj.weight)
        put(f"blk.{i}.attn_output.weight", attn.o_proj.weight)
        put(f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight)
        put(f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight)
        put(f"blk.{i}.ffn_up.weight", mlp.up_proj.weight)
        put(f"blk.{i}.ffn_down.weight", mlp.down_proj.weight)
    put("output_norm.weight", model.model.norm.weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def trained_like(tiny_model):
    """The tiny model with its weights spread out, so that logits differ clearly between tokens."""
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return tiny_model


TEXT = "12+34=46\nabc (x)"


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_gguf_loads_with_identical_logits_and_tokenizer(trained_like, tiny_tokenizer, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(trained_like, tiny_tokenizer, path)
    model, tok = load_model(path)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert model.config.num_key_value_heads == trained_like.config.num_key_value_heads
    ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert tok.eos_token == "<eos>" and tok.bos_token == "<bos>"
    assert torch.allclose(_logits(model, ids), _logits(trained_like, ids), atol=1e-5)


def test_quantized_gguf_is_dequantized_into_a_plain_model(trained_like, tiny_tokenizer, tmp_path):
    import gguf

    path = tmp_path / "tiny-q8.gguf"
    write_llama_gguf(trained_like, tiny_tokenizer, path, quantize_linear=True)
    model, _ = load_model(path)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    # the reference: the same model with every matrix rounded through 8-bit blocks and back
    rounded = copy.deepcopy(trained_like)
    qtype = gguf.GGMLQuantizationType.Q8_0
    with torch.no_grad():
        for param in rounded.parameters():
            if param.ndim == 2:
                blocks = gguf.quants.quantize(param.numpy(), qtype)
                param.copy_(torch.from_numpy(gguf.quants.dequantize(blocks, qtype).reshape(param.shape)))
    ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    got = _logits(model, ids)
    assert not torch.equal(got, _logits(trained_like, ids))
    assert torch.allclose(got, _logits(rounded, ids), atol=1e-5)


def test_model_loaded_from_gguf_saves_as_a_plain_folder(trained_like, tiny_tokenizer, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(trained_like, tiny_tokenizer, path)
    model, tok = load_model(path)
    save_model(model, tok, tmp_path / "hf")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert getattr(plain.config, "quantization_config", None) is None
    ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert torch.equal(_logits(plain, ids), _logits(model, ids))


def _one_line_error(source) -> str:
    with pytest.raises(ForgeError) as err:
        load_model(source)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_corrupted_and_truncated_gguf_files(trained_like, tiny_tokenizer, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(trained_like, tiny_tokenizer, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 64])
    assert "truncated" in _one_line_error(cut)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(data[:40])
    assert "truncated or corrupted" in _one_line_error(header_only)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"PK\x03\x04" + data[4:])
    assert "not a GGUF file" in _one_line_error(garbage)


def test_unsupported_gguf_architecture(trained_like, tiny_tokenizer, tmp_path):
    path = tmp_path / "odd.gguf"
    write_llama_gguf(trained_like, copy.deepcopy(tiny_tokenizer), path, architecture="rwkv9000")
    assert "rwkv9000" in _one_line_error(path)


def test_folder_holding_only_a_gguf_points_at_the_file(trained_like, tiny_tokenizer, tmp_path):
    write_llama_gguf(trained_like, tiny_tokenizer, tmp_path / "tiny.gguf")
    assert "give the file itself" in _one_line_error(tmp_path)


def test_a_gguf_file_is_parsed_once_per_load(trained_like, tiny_tokenizer, tmp_path, monkeypatch):
    """Header check, tokenizer, config and weights share one parsed reader (a real file takes seconds each)."""
    import gguf

    path = tmp_path / "tiny.gguf"
    write_llama_gguf(trained_like, tiny_tokenizer, path)
    parsed = []
    original = gguf.GGUFReader

    class CountingReader(original):
        def __init__(self, *args, **kwargs):
            parsed.append(args[0] if args else kwargs.get("path"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    model, tok = load_model(path)
    assert len(parsed) == 1 and str(parsed[0]).endswith("tiny.gguf")
    assert gguf.GGUFReader is CountingReader  # the sharing ends with the load
    ids = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert torch.allclose(_logits(model, ids), _logits(trained_like, ids), atol=1e-5)
