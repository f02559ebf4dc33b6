"""Is a stage output complete? A cheap structural check that catches truncated or missing model files.

Run on every output when a stage finishes and again on `--resume` for every stage the manifest calls done.
It does not instantiate the model (that can take minutes for a real model); instead it checks what a
half-written or damaged Hugging Face folder gets wrong:
- every `*.json` parses (config, tokenizer, generation config, shard index);
- every `*.safetensors` file has a readable header and exactly the length that header promises;
- every `*.gguf` file opens with the `gguf` reader (it validates the header and tensor table against the size);
- a folder with `config.json` has weights, and every shard named by a `*.index.json` exists.

Exercise: `python -c "from agent_forge.pipeline import check_output; print(check_output('runs/tiny/00-seed/base'))"`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..utils import is_temp_name

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# a safetensors header is JSON metadata; anything this large is a corrupted length field
_MAX_SAFETENSORS_HEADER = 100 * 2**20


def check_output(path: Path | str, *, deep: bool = True) -> str | None:
    """None when `path` (a model folder or file) looks complete, else a short description of what is wrong.

    `deep=False` only checks that the path exists: used for files a stage points at but does not own (a
    user's own GGUF named by the external seed profile), which are not the run's to verify or recompute.
    """
    path = Path(path)
    if not path.exists():
        return f"{path} is missing"
    if not deep:
        return None
    if path.is_file():
        return _check_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(is_temp_name(part) for part in p.parts))
    if not files:
        return f"{path} is an empty directory"
    for file in files:
        problem = _check_file(file)
        if problem:
            return problem
    if (path / "config.json").is_file() and not any(f.suffix in _WEIGHT_SUFFIXES for f in files):
        return f"{path} has config.json but no weight files"
    for index in path.glob("*.index.json"):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            return f"{index} names missing shard(s) {missing[:3]}"
    return None


def _check_file(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"{path} is not valid JSON ({exc.__class__.__name__})"
        return None
    if suffix == ".safetensors":
        return _check_safetensors(path)
    if suffix == ".gguf":
        return _check_gguf(path)
    if suffix in _WEIGHT_SUFFIXES and path.stat().st_size == 0:
        return f"{path} is empty"
    return None


def _check_safetensors(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 8:
        return f"{path} is truncated ({size} bytes)"
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"{path} is truncated (header of {header_len} bytes in a {size}-byte file)"
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{path} has an unreadable header"
    try:
        data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError):
        return f"{path} has a malformed tensor table"
    expected = 8 + header_len + data_end
    if size != expected:
        return f"{path} has {size} bytes but its header describes {expected}"
    return None


def _check_gguf(path: Path) -> str | None:
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            return f"{path} is not a GGUF file (bad magic)"
    try:
        from gguf import GGUFReader

        GGUFReader(os.fspath(path))
    except Exception as exc:  # the reader raises assorted errors (ValueError, struct/numpy errors) on damage
        return f"{path} is a damaged GGUF file ({type(exc).__name__})"
    return None
