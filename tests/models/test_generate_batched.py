"""Batched generation: left padding and the KV cache change nothing, stops cut the text, sampling is seeded."""


import pytest
import torch

from agent_forge.models import (
    generate, generate_groups, generate_token_ids, prompt_format,
)

PROMPTS = ["abc", "h", "abcdefgh", "gfedcba", "aaa", "bcd", "ab", "hgfedcbaabcdefgh", "e", "dcdc"]


@pytest.fixture(scope="module")
def copier(train_copier):
    return train_copier(150)


def test_fixture_gives_varied_outputs(copier, tiny_tokenizer):
    outputs = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=12)
    assert len(set(outputs)) >= 4 and len({len(o) for o in outputs}) >= 2


def test_batched_generation_equals_one_by_one(copier, tiny_tokenizer):
    one_by_one = [generate(copier, tiny_tokenizer, [p], max_new_tokens=12)[0] for p in PROMPTS]
    for batch_size in (3, len(PROMPTS)):
        assert generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=12, batch_size=batch_size) == one_by_one


def test_greedy_matches_transformers_generate(copier, tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer)
    ours = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=12, batch_size=4)
    for prompt, text in zip(PROMPTS, ours):
        ids = torch.tensor(fmt.encode_prompts([prompt]))
        out = copier.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
            eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id,
        )
        assert tiny_tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True) == text


def test_text_stops_at_terminator_and_respects_max_new_tokens(copier, tiny_tokenizer):
    ids = generate_token_ids(
        copier, tiny_tokenizer, prompt_format(tiny_tokenizer).encode_prompts(PROMPTS), max_new_tokens=12
    )
    for row in ids:
        eos_positions = [i for i, t in enumerate(row) if t == tiny_tokenizer.eos_token_id]
        # generation ends right at the first eos, or at the token budget
        assert eos_positions in ([], [len(row) - 1])
        assert len(row) <= 12
    short = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=2)
    assert all(len(text) <= 2 and "<eos>" not in text for text in short)


def test_stop_strings_cut_the_text_and_end_generation(copier, tiny_tokenizer):
    full = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=12)
    checked = 0
    for prompt, text in zip(PROMPTS, full):
        if len(text) < 2:
            continue
        stop = text[1]
        cut = generate(copier, tiny_tokenizer, [prompt], max_new_tokens=12, stop=[stop, "zzzz"])[0]
        assert cut == text[: text.index(stop)]
        ids = generate_token_ids(
            copier, tiny_tokenizer, prompt_format(tiny_tokenizer).encode_prompts([prompt]), max_new_tokens=12,
            stop=[stop],
        )[0]
        assert len(ids) == text.index(stop) + 1  # one character per token: generation halted on the stop
        checked += 1
    assert checked >= 2


def test_sampling_is_reproducible_by_seed(copier, tiny_tokenizer):
    kwargs = dict(max_new_tokens=8, temperature=1.5, batch_size=4)
    a = generate(copier, tiny_tokenizer, PROMPTS, seed=7, **kwargs)
    b = generate(copier, tiny_tokenizer, PROMPTS, seed=7, **kwargs)
    c = generate(copier, tiny_tokenizer, PROMPTS, seed=8, **kwargs)
    assert a == b
    assert a != c


def test_several_samples_per_prompt_are_prompt_major(copier, tiny_tokenizer):
    flat = generate(copier, tiny_tokenizer, PROMPTS[:3], max_new_tokens=8, temperature=1.5, seed=1, n=4)
    assert len(flat) == 12
    groups = generate_groups(copier, tiny_tokenizer, PROMPTS[:3], max_new_tokens=8, temperature=1.5, seed=1, n=4)
    assert [len(g) for g in groups] == [4, 4, 4]
    assert [s for g in groups for s in g] == flat
    assert any(len(set(g)) > 1 for g in groups)  # samples of one prompt differ
    greedy = generate_groups(copier, tiny_tokenizer, PROMPTS[:3], max_new_tokens=8, n=2)
    assert all(g[0] == g[1] for g in greedy)


def test_tiny_nucleus_is_greedy(copier, tiny_tokenizer):
    greedy = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    nucleus = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=0)
    assert nucleus == greedy


def test_prerendered_prompts_and_training_mode(copier, tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer)
    rendered = [fmt.render(p) for p in PROMPTS]
    expected = generate(copier, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    copier.train()
    try:
        assert generate(copier, tiny_tokenizer, rendered, max_new_tokens=8, render=False) == expected
        assert copier.training  # the caller's mode is restored
    finally:
        copier.eval()
    assert generate(copier, tiny_tokenizer, [], max_new_tokens=8) == []


def test_suppressed_tokens_are_never_generated(copier, tiny_tokenizer):
    import copy

    model = copy.deepcopy(copier)
    before = generate(model, tiny_tokenizer, ["abc"], max_new_tokens=6)[0]
    banned = tiny_tokenizer.convert_tokens_to_ids(before[0])
    model.generation_config.suppress_tokens = [banned]
    after = generate(model, tiny_tokenizer, ["abc"], max_new_tokens=6)[0]
    assert before[0] not in after and after != before
