"""Stage 1.2 Quiet-STaR (Zelikman et al. 2024): learnable thought tokens, parallel thought training, thinking.

Modules, each with one job: `tokens` (the `<|startofthought|>`/`<|endofthought|>` delimiters, their
gradient-weighted embeddings, logit masking), `sampling` (reproducible thought sampling), `parallel` (a thought
after every token at once with the diagonal attention mask and the KV cache), `reference` (the naive
per-position equivalent), `mixing` (the mixing head), `loss` (NLL over n_true tokens + REINFORCE), `train`,
`data`, `evaluate`, `inference` (`generate_with_thoughts`), `checkpoint` (HF folder + head file) and `stage`.
Exercise: `agent-forge run --until quietstar`, `pytest tests/stages/quietstar`,
`python benchmarks/bench_quietstar_parallel.py`.
"""

from .checkpoint import HEAD_FILE, QuietStarModel, copy_head, has_head, load_quietstar, save_quietstar
from .inference import ThoughtfulAnswer, generate_with_thoughts
from .mixing import MixingHead
from .stage import run
from .tokens import END_OF_THOUGHT, START_OF_THOUGHT, ThoughtTokens, add_thought_tokens, thought_tokens_of

__all__ = [
    "END_OF_THOUGHT", "HEAD_FILE", "MixingHead", "QuietStarModel", "START_OF_THOUGHT", "ThoughtTokens",
    "ThoughtfulAnswer", "add_thought_tokens", "copy_head", "generate_with_thoughts", "has_head", "load_quietstar",
    "run", "save_quietstar", "thought_tokens_of",
]
