"""A Hugging Face tokenizer as GGUF tokenizer metadata (`tokenizer.ggml.*`), for byte-level BPE vocabularies.

llama.cpp reimplements tokenizers; a GGUF carries the vocabulary, the merges and which pre-tokenizer regex
to use (`tokenizer.ggml.pre`, a name llama.cpp knows). A byte-level BPE (GPT-2's scheme, also Llama 3's and
SmolLM2's) is fully described by these, so it travels exactly. What does not travel:

* the tiny profile's character-level tokenizer (a BPE over raw characters without byte-level encoding or
  merges): llama.cpp has no tokenizer that reproduces it, so export is refused with the reason;
* sentencepiece-style vocabularies (Metaspace, byte fallback): not written by this exporter yet;
* a pre-tokenizer llama.cpp has no name for: written as "default" (GPT-2's rules) with a note, because text
  may then split differently (token ids given to llama.cpp directly are unaffected).

The pre-tokenizer name is read from the tokenizer's own configuration (`tokenizer.json`), not guessed from
a model name: ByteLevel with its regex alone is GPT-2's split ("gpt-2"); individual digits first is
SmolLM's ("smollm"); Llama 3's split regex is "llama-bpe".

Exercise: ``pytest tests/models/test_gguf_export.py -k tokenizer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gguf import TokenType

from ....errors import ForgeError

# Llama 3's pre-tokenizer split, as transformers writes it into tokenizer.json
LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
NEEDS = "GGUF export needs a standard tokenizer (a byte-level BPE vocabulary such as GPT-2's, Llama 3's or SmolLM2's)"


@dataclass
class Vocab:
    """What GGUF stores about a tokenizer."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int]  # bos / eos / unk / pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    notes: list[str] = field(default_factory=list)


def _backend(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ForgeError(f"{NEEDS}; this agent's tokenizer is a slow (Python) tokenizer without tokenizer.json")
    return json.loads(backend.to_str())


def _steps(component: dict | None) -> list[dict]:
    if not component:
        return []
    if component.get("type") == "Sequence":
        return [s for part in component.get("pretokenizers", component.get("normalizers", [])) for s in _steps(part)]
    return [component]


def _is_char_level(model: dict) -> bool:
    return model.get("type") == "BPE" and not model.get("merges")


def pre_tokenizer_name(pre: dict | None) -> str | None:
    """llama.cpp's name for this byte-level pre-tokenizer, or None when it has none."""
    steps = _steps(pre)
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = steps[0].get("pattern", {})
        if pattern.get("Regex") == LLAMA3_SPLIT:
            return "llama-bpe"
    return None


def tokenizer_vocab(tokenizer, n_vocab: int) -> Vocab:
    """The GGUF vocabulary of `tokenizer` for a model with `n_vocab` embedding rows; ForgeError if the
    tokenizer cannot be expressed (with the reason, in one line)."""
    spec = _backend(tokenizer)
    model = spec.get("model") or {}
    steps = _steps(spec.get("pre_tokenizer"))
    byte_level = any(s.get("type") == "ByteLevel" for s in steps)
    if _is_char_level(model) and not byte_level:
        raise ForgeError(
            f"{NEEDS}; this agent's tokenizer is character-level (the tiny profile's: raw characters, no merges), "
            "which llama.cpp cannot reproduce"
        )
    if model.get("type") != "BPE" or not byte_level:
        kind = "sentencepiece-style" if any(s.get("type") == "Metaspace" for s in steps) or model.get("byte_fallback") \
            else f"a {model.get('type')} model without byte-level pre-tokenization"
        raise ForgeError(f"{NEEDS}; this agent's tokenizer is {kind}, which this exporter does not write")

    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise ForgeError(f"the tokenizer has {len(vocab)} tokens but the model only {n_vocab} embedding rows")
    by_id: dict[int, str] = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:  # rows the embedding has beyond the tokenizer (resized to a multiple): never produced
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i]["content"])  # added tokens are matched as raw text by llama.cpp
            types.append(TokenType.CONTROL if added[i].get("special") else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    notes: list[str] = []
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"))
    if pre is None:
        pre = "default"
        notes.append("tokenizer: llama.cpp has no name for this pre-tokenizer; written as 'default' (GPT-2's split), "
                     "so some texts may tokenize differently there (token ids are unaffected)")
    if spec.get("normalizer"):
        notes.append("tokenizer: the normalizer is not expressible in GGUF; llama.cpp tokenizes unnormalized text")

    special = {}
    for role in ("bos", "eos", "unk", "pad"):
        token = getattr(tokenizer, f"{role}_token", None)
        if token is not None and token in vocab:
            special[role] = vocab[token]
    probe = tokenizer("a")["input_ids"]  # what the tokenizer adds around text, the behaviour to reproduce
    template = getattr(tokenizer, "chat_template", None)
    return Vocab(
        tokens=tokens, types=[int(t) for t in types], merges=merges, pre=pre, special=special,
        add_bos="bos" in special and bool(probe) and probe[0] == special["bos"],
        add_eos="eos" in special and bool(probe) and probe[-1] == special["eos"],
        chat_template=template if isinstance(template, str) else None, notes=notes,
    )


def write_vocab(writer, vocab: Vocab) -> None:
    """Add the vocabulary's `tokenizer.ggml.*` fields to a `gguf.GGUFWriter`."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    for role, token_id in vocab.special.items():
        getattr(writer, f"add_{role}_token_id")(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
