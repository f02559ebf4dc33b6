"""Stage 3.5 (baking): Prompt Baking (Bhargava et al. 2024) of knowledge, reasoning strategies and an identity.

For a prompt u the un-prompted model is trained to match the prompted one: the per-token forward KL from the
prompted entering model (the frozen teacher) to the model without u, over trajectories sampled from the
prompted model, on the response tokens (`training.baking`). A LoRA is trained and folded back on a
full-precision model; a ternary model's latent weights are trained through the straight-through estimator, so
it stays ternary (`training.bake_weights`). Candidate prompts (knowledge passages, strategies, the identity's
persona and rules) are scored on validation with the prompt in context; the best are baked one after another
and a bake is kept only if validation says the agent gained without undoing an earlier one. Half-baking,
re-prompting and prompt pursuit are measured; the identity is measured without a prompt on held-out phrasings.

Run: `agent-forge run` with `baking` in the stages; test: `pytest tests/stages/baking`.
"""


def run(ctx):
    """Stage entry point; imports the training machinery only when the stage actually runs."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["run"]
