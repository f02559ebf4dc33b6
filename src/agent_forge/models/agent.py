"""The forged agent as one artifact: `load_agent` restores every extension a folder has, `save_agent` writes
every extension an agent carries.

An agent folder is a plain Hugging Face model folder (it still loads in plain transformers) plus what the
stages added, each one an `AgentExtension` registered in `EXTENSIONS`:

* `ternary`: the `forge_bitnet` marker in config.json; BitLinear layers are rebuilt on load, so a ternary
  checkpoint comes back ternary without any other call. A packed 2-bit export loads through the C kernel.
* `thoughts`: `quietstar_head.safetensors`; the mixing head comes back with its model, the delimiter strings
  from the head file's metadata.
* `experts`: `experts/` (SVF expert vectors, their SVD cache, the prompt router); `agent.extensions["experts"]`
  is also the answer-time dispatch hook.
* `tools`: `tools.json` (the enabled built-in tools); `agent.extensions["tools"]` is a `tools.ToolUse`, the
  answer hook that executes tool calls inside the generation loop.
* `design`: `design.json` (the ADAS stage's agent design); `agent.extensions["design"]` is an `AgentDesign`,
  which `inference.answer` answers through.

Consumers (stages, `chat`, `eval`, the server) call only these two functions; none of them copies side files
or remembers to restore a layer type. Stages 3-5 add their extension (experts, tools, memory, the agent
design) to `EXTENSIONS`, and every consumer picks it up.

    agent = load_agent("runs/tiny/03-bitnet/model")       # ternary, thinking
    ...train agent.model...
    save_agent(agent, "runs/tiny/04-curriculum/model")     # marker, head and model in one atomic write

Exercise: `pytest tests/models/test_agent.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import ForgeError
from ..utils.atomic import atomic_directory
from .formats.ternary import (
    PackedBitLinear,
    is_packed_export,
    is_ternary,
    is_ternary_checkpoint,
    load_packed,
    restore_bitlinear,
    write_packed_files,
)
from .formats.bundle import verify_bundle
from .formats.experts import ExpertsExtension
from .formats.design import DesignExtension
from .formats.tools import ToolsExtension
from .formats.thoughts import HeadInfo, MixingHead, ThoughtTokens, has_head, load_head, save_head, thought_tokens_of
from .loading import load_model
from .saving import write_model_files


@dataclass
class Thoughts:
    """A thinking agent's Quiet-STaR parts: the mixing head, the delimiter ids and the thought length."""

    head: MixingHead
    tokens: ThoughtTokens
    info: HeadInfo

    @property
    def thought_length(self) -> int:
        return self.info.thought_length


@dataclass
class Agent:
    """A loaded agent: the causal LM, its tokenizer, and every extension restored from its folder."""

    model: Any
    tokenizer: Any
    source: Path | None = None
    packed: bool = False  # computes from 2-bit packed weights (inference only)
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def thoughts(self) -> Thoughts | None:
        return self.extensions.get("thoughts")

    @property
    def thinks(self) -> bool:
        return self.thoughts is not None

    @property
    def ternary(self) -> bool:
        return self.packed or is_ternary(self.model)

    def describe(self) -> dict[str, Any]:
        """What this agent carries, for logs and reports."""
        return {
            "ternary": self.ternary,
            "packed": self.packed,
            "extensions": sorted(self.extensions),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


class AgentExtension(Protocol):
    """One extension of a plain model: how it is found in a folder, restored onto an agent, and written."""

    name: str

    def restore(self, agent: Agent, folder: Path) -> None:
        """Rebuild this extension on `agent` (loaded from `folder`); do nothing if the folder lacks it."""

    def prepare_save(self, agent: Agent) -> None:
        """Adjust the model/config before its files are written (e.g. generation settings); may raise."""

    def write(self, agent: Agent, folder: Path) -> None:
        """Write this extension's own files into `folder` (a temporary folder renamed into place later)."""


class TernaryExtension:
    """BitNet b1.58 layers: the marker travels in config.json; BitLinear layers are rebuilt on load."""

    name = "ternary"

    def restore(self, agent: Agent, folder: Path) -> None:
        if not agent.packed and is_ternary_checkpoint(agent.model.config):
            restore_bitlinear(agent.model, folder)

    def prepare_save(self, agent: Agent) -> None:
        if agent.packed:
            raise ForgeError("a packed agent is inference-only; save the latent ternary checkpoint instead")
        if is_ternary_checkpoint(agent.model.config) and not is_ternary(agent.model):
            raise ForgeError(
                "refusing to save a model marked ternary that is partly full precision "
                "(call keep_ternary after adding layers)"
            )

    def write(self, agent: Agent, folder: Path) -> None:
        return None  # the marker is part of config.json, written with the model


class ThoughtsExtension:
    """Quiet-STaR's mixing head beside the model; the delimiters are suppressed in ordinary generation."""

    name = "thoughts"

    def restore(self, agent: Agent, folder: Path) -> None:
        if not has_head(folder):
            return
        head, info = load_head(folder)
        hidden = agent.model.config.hidden_size
        if head.hidden_size != hidden:
            raise ForgeError(f"Quiet-STaR head in {folder} is for hidden size {head.hidden_size}, the model has {hidden}")
        tokens = thought_tokens_of(agent.tokenizer, info.start_token, info.end_token)
        reference = next(agent.model.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
        agent.extensions[self.name] = Thoughts(head.to(device=device, dtype=dtype).eval(), tokens, info)

    def prepare_save(self, agent: Agent) -> None:
        thoughts = agent.thoughts
        if thoughts is not None and getattr(agent.model, "generation_config", None) is not None:
            # the standard field with which plain `model.generate` keeps the delimiters out of ordinary text
            agent.model.generation_config.suppress_tokens = list(thoughts.tokens.ids)

    def write(self, agent: Agent, folder: Path) -> None:
        if agent.thoughts is not None:
            save_head(agent.thoughts.head, agent.thoughts.info, folder)


# order matters on load: layers are restored (ternary) before heads that read the model's shape
# experts after ternary: their SVD belongs to the (latent) weights the ternary restore rebuilt
# tools last: `tools.json` (enabled tools, the answer hook that executes calls) reads nothing of the model
EXTENSIONS: list[AgentExtension] = [TernaryExtension(), ThoughtsExtension(), ExpertsExtension(), ToolsExtension(),
                                    DesignExtension()]


def load_agent(source: str | os.PathLike, *, device=None, dtype=None) -> Agent:
    """Load the agent at `source` (HF folder, packed export or GGUF file) with every extension restored.

    A packed export runs on the CPU in fp32 (its kernel's only target). A bundle (the package stage's output,
    with `bundle.json`) is checked file by file against its recorded sha256 first. ForgeError on missing or
    damaged parts.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        verify_bundle(path)  # a deployable bundle (`bundle.json`): every file must match its recorded sha256
    if path.is_dir() and is_packed_export(path):
        on_cpu = device in (None, "auto") or torch.device(device).type == "cpu"
        if not on_cpu or dtype not in (None, "auto", "float32", torch.float32):
            raise ForgeError(f"{path} is a packed 2-bit export: it runs on the CPU in float32 only")
        model, tokenizer = load_packed(path)
        if tokenizer is None:
            raise ForgeError(f"packed export {path} has no tokenizer files")
        agent = Agent(model, tokenizer, source=path, packed=True)
    else:
        model, tokenizer = load_model(str(source), device=device, dtype=dtype)
        # a ternary GGUF export (`agent-forge export --gguf`) loads with packed layers: inference only, like a packed folder
        agent = Agent(model, tokenizer, source=path, packed=any(isinstance(m, PackedBitLinear) for m in model.modules()))
    if path.is_dir():
        for extension in EXTENSIONS:
            extension.restore(agent, path)
    return agent


def save_agent(agent: Agent, path: str | os.PathLike, *, packed: bool = False) -> Path:
    """Write the agent's model, tokenizer and every extension into the folder `path`, atomically.

    `packed=True` writes the 2-bit packed export of a ternary agent instead of its latent checkpoint (what
    `load_agent` then runs through the C kernel), with the same extensions beside it.
    """
    path = Path(path)
    for extension in EXTENSIONS:
        if not (packed and extension.name == "ternary"):
            extension.prepare_save(agent)
    with atomic_directory(path) as temp:
        if packed:
            write_packed_files(agent.model, agent.tokenizer, temp)
        else:
            write_model_files(agent.model, agent.tokenizer, temp)
        for extension in EXTENSIONS:
            extension.write(agent, temp)
    return path


def with_thoughts(agent: Agent, head: MixingHead, tokens: ThoughtTokens, info: HeadInfo) -> Agent:
    """The agent with a (new or retrained) Quiet-STaR head attached, for stages that train one."""
    agent.extensions["thoughts"] = Thoughts(head, tokens, info)
    return agent
