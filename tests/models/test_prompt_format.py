"""Prompt rendering, answer terminators and the teacher-forcing batches built from them."""

import copy

import pytest
import torch

from agent_forge.models import IGNORE_INDEX, encode_pairs, prompt_format

# a ChatML-style template, as SmolLM2 and Qwen use: each turn is <|im_start|>role\ncontent<|im_end|>\n
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def chat_tokenizer(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_plain_format_renders_with_newline_and_ends_with_eos(tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer)
    assert not fmt.uses_chat_template
    assert fmt.render("1+1=") == "1+1=\n"
    assert fmt.terminator_id == tiny_tokenizer.eos_token_id
    assert fmt.training_text("1+1=", "2") == "1+1=\n2<eos>"
    assert fmt.encode_prompts(["ab"]) == [tiny_tokenizer("ab\n")["input_ids"]]


def test_chat_format_uses_the_template_and_its_end_of_turn_token(chat_tokenizer):
    fmt = prompt_format(chat_tokenizer)
    assert fmt.uses_chat_template
    assert fmt.render("hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    im_end = chat_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert fmt.terminator_id == im_end and fmt.terminator_text == "<|im_end|>"
    assert set(fmt.stop_ids) == {im_end, chat_tokenizer.eos_token_id}
    assert fmt.training_text("hi", "yo") == fmt.render("hi") + "yo<|im_end|>"
    # the template writes its own specials, so encoding adds no <bos>
    ids = fmt.encode_prompts(["hi"])[0]
    assert ids[0] == chat_tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_format_follows_a_template_added_later(tiny_tokenizer, chat_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    assert not prompt_format(tok).uses_chat_template
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    assert prompt_format(tok).uses_chat_template


def test_encode_pairs_puts_loss_on_answer_and_terminator_only(tiny_tokenizer):
    prompts, answers = ["12+3=", "7*8="], ["15", "56x"]
    batch = encode_pairs(tiny_tokenizer, prompts, answers)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == mask.shape == labels.shape and ids.dtype == torch.long
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        start, end = batch["answer_spans"][row]
        assert start == batch["prompt_lengths"][row] == len(prompt) + 2  # <bos> + prompt + "\n"
        assert tiny_tokenizer.decode(ids[row, start:end].tolist()) == answer + "<eos>"
        assert torch.equal(labels[row, start:end], ids[row, start:end])
        assert (labels[row, :start] == IGNORE_INDEX).all() and (labels[row, end:] == IGNORE_INDEX).all()
        # right padding: real tokens first, padding (masked, id = pad) after
        assert mask[row, :end].all() and not mask[row, end:].any()
        assert (ids[row, end:] == tiny_tokenizer.pad_token_id).all()
    # the prompt part is exactly what generation feeds the model
    fmt = prompt_format(tiny_tokenizer)
    assert ids[0, : batch["prompt_lengths"][0]].tolist() == fmt.encode_prompts([prompts[0]])[0]


def test_encode_pairs_with_chat_template_ends_answers_with_end_of_turn(chat_tokenizer):
    batch = encode_pairs(chat_tokenizer, ["q"], ["a"])
    start, end = batch["answer_spans"][0]
    tokens = chat_tokenizer.convert_ids_to_tokens(batch["input_ids"][0, start:end].tolist())
    assert tokens == ["a", "<|im_end|>"]


def test_encode_pairs_rejects_mismatched_lengths(tiny_tokenizer):
    with pytest.raises(ValueError):
        encode_pairs(tiny_tokenizer, ["a", "b"], ["c"])
