"""The Quiet-STaR head file, `quietstar_head.safetensors`, stored next to a thinking model's HF folder.

The folder holds the model with the two thought tokens in its vocabulary and their trained embeddings in the
embedding matrix, so plain transformers loads it and may ignore thinking. The head file holds the mixing
head's tensors; its safetensors metadata records the head's shape, the thought length and the delimiter
strings, which is everything `generate_with_thoughts` needs besides the model. `models.agent` reads and
writes it as the agent's `thoughts` extension. Exercise: `pytest tests/stages/quietstar/test_quietstar_checkpoint.py`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ....errors import ForgeError
from ....utils import atomic_write_bytes
from .mixing import MixingHead

HEAD_FILE = "quietstar_head.safetensors"
FORMAT = "agent_forge.quietstar/1"


@dataclass
class HeadInfo:
    """What the head file says besides its tensors."""

    thought_length: int
    start_token: str
    end_token: str


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
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in head.state_dict().items()}
    atomic_write_bytes(folder / HEAD_FILE, reproducible_safetensors(tensors, metadata))
    return folder / HEAD_FILE


def reproducible_safetensors(tensors: dict, metadata: dict[str, str]) -> bytes:
    """`safetensors.torch.save` with the header's keys in sorted order, so equal heads give equal bytes.

    safetensors writes `__metadata__` in hash-map order, which differs between calls; a resumed run must
    write the same bytes as an uninterrupted one. Only the JSON header is rewritten (data offsets are
    relative to the end of the header, so they stay valid); it is padded with spaces to 8 bytes, as
    safetensors does.
    """
    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]


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
