"""General-text perplexity: a fixed, offline English text (stdlib docstrings), scored with the model's own tokenizer.

The model is a tiny Llama over a real byte-level BPE tokenizer trained here (the `tokenizers` library, offline,
under a second), so the measurement sees subword tokens as a pretrained model's tokenizer writes them.
"""

from __future__ import annotations

import math

import pytest
import torch

from agent_forge.config import TinyModelConfig, load_config
from agent_forge.errors import ForgeError
from agent_forge.evaluation.general_text import MODULES, general_text, general_text_perplexity, text_tokens
from agent_forge.evaluation.trajectory import measure_agent
from agent_forge.models import build_tiny_model, save_model
from agent_forge.pipeline.report import PERPLEXITY_COLUMNS, TRAJECTORY_COLUMNS, TrajectoryRow, trajectory_columns


@pytest.fixture(scope="module")
def bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([general_text()[20000:80000]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture
def bpe_model(bpe_tokenizer):
    cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=128)
    return build_tiny_model(bpe_tokenizer, cfg, seed=0)


def test_the_text_is_fixed_prose_from_every_module():
    text = general_text()
    assert text == general_text() and len(text.split()) > 10_000
    assert not any(line.lstrip().startswith(">>>") for line in text.splitlines())
    assert len(MODULES) == len(set(MODULES)) >= 20
    # round-robin: the first pieces come from different modules (argparse's, bisect's, calendar's docstrings)
    assert "Command-line parsing library" in text[:200] and "calendar" in text[:5000].lower()


def test_perplexity_is_exp_of_the_mean_next_token_loss(bpe_model, bpe_tokenizer):
    record = general_text_perplexity(bpe_model, bpe_tokenizer, tokens=200, window=64, batch_size=2)
    assert record["tokens"] == 192 and record["window"] == 64  # three whole windows; the rest is not scored
    ids = torch.tensor(text_tokens(bpe_tokenizer, 192)).view(3, 64)
    with torch.no_grad():
        losses = [bpe_model(input_ids=row[None], labels=row[None]).loss.item() for row in ids]
    assert record["perplexity"] == pytest.approx(math.exp(sum(losses) / 3), rel=1e-3)
    # an untrained model is close to uniform over the vocabulary
    assert len(bpe_tokenizer) / 3 < record["perplexity"] < len(bpe_tokenizer) * 3
    again = general_text_perplexity(bpe_model, bpe_tokenizer, tokens=200, window=64)
    assert again == record and "stdlib docstrings" in record["source"] and len(record["digest"]) == 16


def test_training_on_the_text_lowers_it(bpe_model, bpe_tokenizer):
    before = general_text_perplexity(bpe_model, bpe_tokenizer, tokens=256, window=64)["perplexity"]
    ids = torch.tensor(text_tokens(bpe_tokenizer, 256)).view(4, 64)
    optimizer = torch.optim.AdamW(bpe_model.parameters(), lr=1e-2)
    bpe_model.train()
    for _ in range(30):
        optimizer.zero_grad()
        bpe_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    after = general_text_perplexity(bpe_model, bpe_tokenizer, tokens=256, window=64)["perplexity"]
    assert after < before / 2
    assert bpe_model.training  # the measurement restores the mode it found


def test_bad_sizes_are_one_line_errors(bpe_model, bpe_tokenizer):
    with pytest.raises(ForgeError, match="at least 2"):
        general_text_perplexity(bpe_model, bpe_tokenizer, tokens=100, window=1)
    with pytest.raises(ForgeError, match="no window"):
        general_text_perplexity(bpe_model, bpe_tokenizer, tokens=10, window=64)
    with pytest.raises(ForgeError, match="only"):
        general_text_perplexity(bpe_model, bpe_tokenizer, tokens=10**9, window=64)


def test_the_trajectory_records_it_only_when_asked(bpe_model, bpe_tokenizer, tmp_path):
    folder = save_model(bpe_model, bpe_tokenizer, tmp_path / "m")
    common = ["report.items_per_level=1", "report.levels=[1]", "report.speed_prompts=1", "report.speed_tokens=2"]
    off = measure_agent(folder, load_config(None, common).report, seed=0)
    assert "general_text" not in off
    cfg = load_config(None, common + ["report.general_text=true", "report.general_text_tokens=128",
                                      "report.general_text_window=64"]).report
    on = measure_agent(folder, cfg, seed=0)
    direct = general_text_perplexity(bpe_model, bpe_tokenizer, tokens=128, window=64)
    assert on["general_text"]["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-4)
    assert on["general_text"]["digest"] == direct["digest"]


def test_the_report_shows_perplexity_columns_only_for_runs_that_measured_it():
    plain = [TrajectoryRow("seed", "model", leaving=50.0)]
    assert trajectory_columns(plain) == TRAJECTORY_COLUMNS and len(plain[0].cells()) == len(TRAJECTORY_COLUMNS)
    measured = [TrajectoryRow("bitnet", "model", entering=50.0, leaving=40.0, ppl_entering=21.5, ppl_leaving=480.25)]
    columns = trajectory_columns(measured)
    assert columns[5:7] == PERPLEXITY_COLUMNS and columns[4] == "flag"
    cells = measured[0].cells(True)
    assert len(cells) == len(columns) and cells[5:7] == ["21.50", "480.25"]
