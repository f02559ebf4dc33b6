"""Sleep for the curriculum: replay then Lookahead-style weight averaging.

The code lives in `agent_forge.training.sleep` (the continuous learner uses the same consolidation); this module
keeps the curriculum's import path. Exercise: `pytest tests/stages/curriculum/test_sleep_dream.py`.
"""

from ...training.sleep import TrainStep, average_into, sleep, snapshot

__all__ = ["TrainStep", "average_into", "sleep", "snapshot"]
