"""Stage 3 (experts): SVF expert vectors (Transformer², Sun et al. 2025), one per domain, and their dispatch.

For the entering agent's MLP matrices the SVD is computed once and cached; an expert is one vector of
singular-value scales per matrix, trained with REINFORCE on verified rewards (group baseline, KL to the
entering model, validation-based checkpoint selection). Two classifiers send each prompt to an expert, both
trained and measured, `experts.dispatch` choosing which one dispatches: the agent itself, taught to answer
"domain of: <prompt>" with one more SVF vector held only while it classifies (mode 1, `self_classify`), and
a logistic-regression router on the agent's own mean-pooled hidden states (mode 2). Below a confidence
threshold chosen on validation the base weights answer. The experts, their SVD cache and the router travel with the agent (`experts/`).

Run: `agent-forge run` with `experts` in the stages; test: `pytest tests/stages/experts`.
"""


def run(ctx):
    """Stage entry point; imports the training machinery only when the stage actually runs."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["run"]
