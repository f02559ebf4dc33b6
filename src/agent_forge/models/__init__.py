"""Model I/O for every stage: load (HF folder, GGUF, built-in tiny), save, special tokens, prompts, generation.

Nothing here is specific to a stage. Exercise: `pytest tests/models`.
"""

from .device import default_device, default_dtype, resolve_device, resolve_dtype
from .loading import check_gguf_file, check_safetensors_file, load_model
from .generation import completion_text, generate, generate_groups, generate_token_ids
from .prompting import IGNORE_INDEX, PromptFormat, encode_pairs, pad_id, prompt_format
from .saving import carry_extra_files, save_model
from .special_tokens import add_special_tokens
from .tiny import build_tiny_model, build_tiny_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "PromptFormat",
    "add_special_tokens",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "check_gguf_file",
    "check_safetensors_file",
    "completion_text",
    "default_device",
    "default_dtype",
    "encode_pairs",
    "generate",
    "generate_groups",
    "generate_token_ids",
    "load_model",
    "pad_id",
    "prompt_format",
    "resolve_device",
    "resolve_dtype",
    "save_model",
]
