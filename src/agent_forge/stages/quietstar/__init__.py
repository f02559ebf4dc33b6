"""Stage 1.2 Quiet-STaR (Zelikman et al. 2024): learnable thought tokens, parallel thought training, thinking.

Modules, each with one job: `embedding` (the delimiters' gradient-weighted embeddings), `parallel` (a thought
after every token at once with the diagonal attention mask and the KV cache), `reference` (the naive
per-position equivalent), `loss` (NLL over n_true tokens + REINFORCE), `train`, `data`, `evaluate` and `stage`.
The format of a thinking model (delimiters, mixing head, head file) is in `agent_forge.models.formats.thoughts`;
answering with thoughts (`generate_with_thoughts`) is in `agent_forge.inference`.
Exercise: `agent-forge run --until quietstar`, `pytest tests/stages/quietstar`,
`python benchmarks/bench_quietstar_parallel.py`.
"""

from .stage import run

__all__ = ["run"]
