"""The deployable bundle's manifest (`bundle.json`): every file's sha256 and size, sizes per part, and what
the bundle passed. Written by the `package` stage; `load_agent` verifies it before loading a bundle, so a
damaged file is a one-line ForgeError, never a silently different model.

Parts (bytes; they add up to the bundle's size without `bundle.json`): `packed_linears` (2-bit decoder
linears with their scales and sub-norms), `int8_embeddings` (per-row absmax int8 rows and their scales, when
the package stage applied them), `full_precision` (every other tensor of the model file), `thought_head`,
`experts`, `tokenizer`, `tools`, `memory` (the memory store's snapshot), `other` (config, generation config,
safetensors headers, anything else).

Exercise: `pytest tests/stages/package`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ...errors import ForgeError
from ...utils.atomic import atomic_write_text
from .tools import MEMORY_FILE

MANIFEST = "bundle.json"
FORMAT = "agent_forge.bundle/1"
ROW_SCALE = "_row_scale"  # `<key>_row_scale` (rows, 1) fp32 beside an int8 `<key>` (see `int8_rows`)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                    "tokenizer.model", "added_tokens.json", "chat_template.jinja")


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row absmax int8 quantization: (int8 codes, fp32 scale (rows, 1)); `dequantize_rows` inverts it."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def dequantize_rows(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The fp32 weight an int8 row tensor stands for (the packed loader and the in-memory model use this)."""
    return codes.float() * scale.float()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_files(folder: Path) -> list[Path]:
    """Every file of the bundle except its manifest, in path order."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in bundle_files(folder)}


def _tensor_parts(file: Path, packed_modules: list[str]) -> dict[str, int]:
    from .ternary.packed import read_safetensors_header

    header = read_safetensors_header(file)
    parts = {"packed_linears": 0, "int8_embeddings": 0, "full_precision": 0}
    prefixes = tuple(f"{m}." for m in packed_modules)
    int8 = {k[: -len(ROW_SCALE)] for k in header if k.endswith(ROW_SCALE)}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        size = info["data_offsets"][1] - info["data_offsets"][0]
        if prefixes and key.startswith(prefixes):
            parts["packed_linears"] += size
        elif key in int8 or key.endswith(ROW_SCALE):
            parts["int8_embeddings"] += size
        else:
            parts["full_precision"] += size
    return parts


def part_sizes(folder: Path) -> dict[str, int]:
    """Bytes per part (see the module doc); the values add up to the size of every file but `bundle.json`."""
    folder = Path(folder)
    parts = dict.fromkeys(["packed_linears", "int8_embeddings", "full_precision", "thought_head", "experts",
                           "tokenizer", "tools", "memory", "other"], 0)
    packed_modules: list[str] = []
    config = folder / "config.json"
    if config.is_file():
        marker = json.loads(config.read_text()).get("forge_bitnet") or {}
        if marker.get("packed"):
            packed_modules = list(marker.get("modules") or [])
    for path in bundle_files(folder):
        rel = path.relative_to(folder)
        size = path.stat().st_size
        if rel.parts[0] == "experts":
            parts["experts"] += size
        elif rel.name == "quietstar_head.safetensors":
            parts["thought_head"] += size
        elif rel.name in _TOKENIZER_FILES:
            parts["tokenizer"] += size
        elif rel.name == "tools.json":
            parts["tools"] += size
        elif rel.name == MEMORY_FILE:
            parts["memory"] += size
        elif len(rel.parts) == 1 and rel.suffix == ".safetensors":
            tensors = _tensor_parts(path, packed_modules)
            for key, value in tensors.items():
                parts[key] += value
            parts["other"] += size - sum(tensors.values())  # the header
        else:
            parts["other"] += size
    return parts


def write_manifest(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write `bundle.json` (the given fields plus the file table and part sizes); returns what was written."""
    folder = Path(folder)
    files = file_table(folder)
    manifest = {"format": FORMAT, **data, "files": files, "parts": part_sizes(folder),
                "total_bytes": sum(f["bytes"] for f in files.values())}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForgeError(f"bundle {folder} is damaged: {MANIFEST} is unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise ForgeError(f"bundle {folder} is damaged: {MANIFEST} is not of format {FORMAT}")
    return data


def verify_bundle(folder: Path) -> dict[str, Any] | None:
    """Check every file against `bundle.json` (sizes, then sha256); None when `folder` is no bundle.

    ForgeError in one line naming the first file that is missing, extra or changed.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    recorded = manifest["files"]
    present = {p.relative_to(folder).as_posix(): p for p in bundle_files(folder)}
    missing = sorted(set(recorded) - set(present))
    if missing:
        raise ForgeError(f"bundle {folder} is damaged: {missing[0]} is missing (listed in {MANIFEST})")
    for rel, entry in recorded.items():
        path = present[rel]
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise ForgeError(f"bundle {folder} is damaged: {rel} does not match its sha256 in {MANIFEST}")
    extra = sorted(set(present) - set(recorded))
    if extra:
        raise ForgeError(f"bundle {folder} is damaged: {extra[0]} is not listed in {MANIFEST}")
    return manifest
