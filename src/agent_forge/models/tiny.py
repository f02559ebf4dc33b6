"""The built-in tiny profile: a character-level tokenizer and a small Llama created from scratch.

The tokenizer gives every character of the corpus its own token (a BPE model trained with `tokenizers` and
allowed no merges), plus `<pad>`, `<bos>`, `<eos>`, `<unk>`; it prepends `<bos>` to every encoded text and has
no chat template, so prompts are rendered as `prompt + "\\n"` and answers end with `<eos>`.

The model ties its input embeddings and LM head, as SmolLM2 (the real model this project loads) does, so that
every later stage meets tied weights on the tiny profile already instead of first on the real model.

Exercise: `python -c "from agent_forge.models import build_tiny_tokenizer as t; print(t(['12+34=46'])('1+2\\n'))"`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..config.seed import TinyModelConfig
from ..errors import ForgeError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def build_tiny_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over every character in `corpus` (texts, or simply an alphabet string).

    Ids are deterministic: the four special tokens first, then the characters in code-point order.
    """
    if isinstance(corpus, str):
        corpus = [corpus]
    texts = [text for text in corpus if text]
    if not texts:
        raise ForgeError("cannot build a tokenizer from an empty corpus")
    backend = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=False))
    # vocab_size=0 stops the trainer before its first merge: the vocabulary is exactly the alphabet
    trainer = trainers.BpeTrainer(vocab_size=0, special_tokens=SPECIAL_TOKENS, show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    backend.decoder = decoders.Fuse()
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        padding_side="right", clean_up_tokenization_spaces=False,
    )


def tiny_model_config(tokenizer, cfg: TinyModelConfig) -> LlamaConfig:
    """The LlamaConfig of the tiny profile for this tokenizer's vocabulary."""
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ForgeError(
            f"tiny model: hidden_size {cfg.hidden_size} is not divisible by num_attention_heads {cfg.num_attention_heads}"
        )
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ForgeError(
            f"tiny model: num_attention_heads {cfg.num_attention_heads} is not a multiple of "
            f"num_key_value_heads {cfg.num_key_value_heads}"
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(tokenizer, cfg: TinyModelConfig, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised fp32 Llama on CPU, in eval mode; the same seed gives the same weights.

    The global torch RNG is left untouched, so building a model never shifts a caller's random stream.
    """
    config = tiny_model_config(tokenizer, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.float().eval()
