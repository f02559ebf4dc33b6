"""Model I/O for every stage: load (HF folder, GGUF, built-in tiny), save, special tokens, prompts, generation,
the formats a forged agent adds to a plain model (`formats/`), and the agent as one artifact (`agent.py`).

Nothing here is specific to a stage, and nothing here imports a stage. Exercise: `pytest tests/models`.
"""

from .device import default_device, default_dtype, resolve_device, resolve_dtype
from .loading import check_gguf_file, check_safetensors_file, load_model
from .generation import completion_text, generate, generate_groups, generate_token_ids
from .logprobs import token_logprobs
from .prompting import IGNORE_INDEX, PromptFormat, encode_pairs, encode_segments, pad_id, prompt_format
from .saving import save_model, write_model_files
from .agent import Agent, Thoughts, load_agent, save_agent, with_thoughts
from .special_tokens import add_special_tokens
from .tiny import build_tiny_model, build_tiny_tokenizer

__all__ = [
    "Agent",
    "Thoughts",
    "load_agent",
    "save_agent",
    "with_thoughts",
    "write_model_files",
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
    "encode_segments",
    "generate",
    "generate_groups",
    "generate_token_ids",
    "load_model",
    "pad_id",
    "prompt_format",
    "resolve_device",
    "resolve_dtype",
    "save_model",
    "token_logprobs",
]
