"""Continuous learning: logged experience -> curriculum cycles on the deployed agent -> a gated new version.

A layer beside the stages, never importing one (it uses `training`, `evaluation`, `tasks`, `models`,
`interactions`); one module per job:

* `settings.py` (`LearnSettings`), `deployment.py` (run or version store, its lock, immutable versions);
* `experience.py` (the log -> verified failures, successes, corrections), `distribution.py` (their
  (domain, level) cells and fresh held-out tasks of the same distribution);
* `rehearsal.py` (self-replay: the deployed agent's own verified answers on fresh tasks of every suite cell),
  `cycles.py` (policy gradient with the verifier's reward and KL to the deployed version, demonstrations,
  replay, rehearsal, sleep; checkpointed), `gate.py` (held-out and full-suite measurements, the promotion rule, canary);
* `learn.py` (`learn`, `rollback`: the commands).

Exercise: `pytest tests/learning`.
"""

from .deployment import folder_digest, open_deployment
from .learn import Outcome, learn, rollback
from .settings import LearnSettings

__all__ = ["LearnSettings", "Outcome", "folder_digest", "learn", "open_deployment", "rollback"]
