"""The formats a forged agent is stored in, one subpackage per extension of a plain Hugging Face model.

* `ternary`: BitNet b1.58 layers (latent weights + a `forge_bitnet` marker in config.json), the 2-bit packed
  export in transformers' bitnet layout, and the C kernel that computes from packed weights;
* `thoughts`: Quiet-STaR's delimiter tokens and the mixing head stored as `quietstar_head.safetensors`;
* `gguf_export`: one GGUF file for llama.cpp (ternary layers as TQ2_0/TQ1_0 with exact scales) and its reader.

`agent_forge.models.agent` composes them: `load_agent` restores every extension a folder has, `save_agent`
writes every extension an agent carries. Stages 3-5 add their extensions here. Nothing in this package
imports a stage.
"""
