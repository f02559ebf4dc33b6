"""How a Quiet-STaR model is stored: an ordinary HF folder plus `quietstar_head.safetensors` next to it.

The folder (written by `agent_forge.models.save_model`) holds the model with the two thought tokens in its
vocabulary and their trained embeddings in the embedding matrix, so any later stage loads it with
`load_model` like every other model and may ignore thinking. The extra file holds the mixing head's tensors;
its safetensors metadata records the head's shape, the thought length and the delimiter strings, which is
everything `generate_with_thoughts` needs besides the model. Exercise:
`pytest tests/stages/quietstar/test_quietstar_checkpoint.py`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ...errors import ForgeError
from ...models import load_model, save_model
from ...utils import atomic_write_bytes
from .mixing import MixingHead
from .tokens import ThoughtTokens, thought_tokens_of

HEAD_FILE = "quietstar_head.safetensors"
FORMAT = "agent_forge.quietstar/1"


@dataclass
class HeadInfo:
    """What the head file says besides its tensors."""

    thought_length: int
    start_token: str
    end_token: str


@dataclass
class QuietStarModel:
    """A loaded Quiet-STaR model: the causal LM, its tokenizer, the mixing head and the thought settings."""

    model: object
    tokenizer: object
    head: MixingHead
    tokens: ThoughtTokens
    thought_length: int


def save_head(head: MixingHead, info: HeadInfo, folder: Path | str) -> Path:
    """Write `quietstar_head.safetensors` into `folder` atomically."""
    folder = Path(folder)
    metadata = {
        "format": FORMAT,
        "hidden_size": str(head.hidden_size),
        "depth": str(head.depth),
        "thought_length": str(info.thought_length),
        "start_token": info.start_token,
        "end_token": info.end_token,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    atomic_write_bytes(folder / HEAD_FILE, save(tensors, metadata=metadata))
    return folder / HEAD_FILE


def has_head(folder: Path | str) -> bool:
    return (Path(folder) / HEAD_FILE).is_file()


def load_head(folder: Path | str) -> tuple[MixingHead, HeadInfo]:
    """Read the head file of a Quiet-STaR model folder; ForgeError if it is missing or corrupted."""
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise ForgeError(f"{folder} has no {HEAD_FILE}: it is not the output of the quietstar stage")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ForgeError(f"corrupted Quiet-STaR head {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ForgeError(f"{path} is not a Quiet-STaR head of format {FORMAT} (found {meta.get('format')!r})")
    try:
        head = MixingHead(int(meta["hidden_size"]), depth=int(meta["depth"]))
        head.load_state_dict(tensors)
        info = HeadInfo(int(meta["thought_length"]), meta["start_token"], meta["end_token"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ForgeError(f"corrupted Quiet-STaR head {path}: {exc}") from None
    return head, info


def save_quietstar(model, tokenizer, head: MixingHead, info: HeadInfo, folder: Path | str) -> Path:
    """Save the model (HF folder via `save_model`) and then its head file into the same folder.

    The delimiters go into the generation config's `suppress_tokens`, the standard field with which
    `model.generate` keeps tokens out of ordinary generation.
    """
    folder = Path(folder)
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in (info.start_token, info.end_token))
    model.generation_config.suppress_tokens = [start, end]
    save_model(model, tokenizer, folder)
    save_head(head, info, folder)
    return folder


def load_quietstar(folder: Path | str, *, device=None, dtype=None) -> QuietStarModel:
    """Load model, tokenizer and head saved by `save_quietstar`; ForgeError on missing/corrupted parts."""
    head, info = load_head(folder)
    model, tokenizer = load_model(str(folder), device=device, dtype=dtype)
    tokens = thought_tokens_of(tokenizer, info.start_token, info.end_token)
    if head.hidden_size != model.config.hidden_size:
        raise ForgeError(
            f"Quiet-STaR head in {folder} is for hidden size {head.hidden_size}, the model has {model.config.hidden_size}"
        )
    head = head.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype).eval()
    return QuietStarModel(model, tokenizer, head, tokens, info.thought_length)


def copy_head(source: Path | str, destination: Path | str) -> bool:
    """Carry the head file from one model folder to another (for later stages that keep thinking); True if copied."""
    src = Path(source) / HEAD_FILE
    if not src.is_file():
        return False
    shutil.copyfile(src, Path(destination) / HEAD_FILE)
    return True
