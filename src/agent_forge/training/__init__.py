"""Training loops shared by several stages: supervised (answer-only loss), distillation, policy gradient.

Stages call these instead of writing their own optimiser loops, so schedules, clipping, determinism and
progress reporting behave the same everywhere.
"""
