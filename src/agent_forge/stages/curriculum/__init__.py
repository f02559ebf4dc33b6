"""Stage 2 (curriculum): baseline assessment, a ten-level curriculum of RL cycles, sleep, dream, self-modeling.

The stage finds the entering model's frontier per domain, then climbs level by level: each cycle mixes
organic, synthetic, retrieval-augmented and multi-agent tasks, samples groups of answers (after an internal
thought when the model has Quiet-STaR's thought tokens), verifies them and takes a group-baseline
policy-gradient step with a KL penalty to the entering model; an edge-of-chaos controller keeps the success
rate in a band; sleep (replay + weight averaging) consolidates, dream explores and keeps verified variations,
and self-modeling teaches the model its own confidence. Metrics and plots land in the stage directory.

Run: `agent-forge run --until curriculum`; test: `pytest tests/stages/curriculum`.
"""



def run(ctx):
    """Stage entry point; imports the training machinery only when the stage actually runs."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["run"]
