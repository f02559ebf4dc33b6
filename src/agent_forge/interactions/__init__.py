"""What a served agent did and how it went: the interaction log, feedback, verified outcomes, model versions
and the drift watch's canary. The server writes it (`agent_forge.serve`); a learner reads it.

A layer below the stages and the server (imports `errors`, `utils`, `tools`, `tasks`), one module per job:

* `records.py` (the rows: `Interaction`, `Feedback`, `CanaryRun`; `tool_trace`), `redact.py` (secrets out);
* `backends.py` (SQLite in WAL mode, or PostgreSQL through psycopg), `writer.py` (the one writer thread with
  group commit), `store.py` (`InteractionLog`: writes through the writer, reads, retention);
* `recognise.py` (a prompt -> a task of a known domain with its reference answer: verified outcomes);
* `canary.py` (the fixed canary set, its score, the falling rule), `versions.py` (the version store's
  folder/pointer layout, a served folder's version name), `dashboard.py` (the dashboard's numbers).

Exercise: `pytest tests/interactions`.
"""

from .canary import CanaryPolicy, assess, canary_tasks, score
from .dashboard import dashboard_data, percentile
from .records import CanaryRun, Feedback, Interaction, new_id, tool_trace
from .recognise import recognise, verify_answer
from .redact import REDACT_ENV, Redactor, resolve_redactions
from .store import InteractionLog, Retention
from .versions import LOG_FILE, current_version, history, is_store, run_store, set_current, version_of

__all__ = [
    "LOG_FILE", "CanaryPolicy", "CanaryRun", "Feedback", "Interaction", "InteractionLog", "REDACT_ENV", "Redactor", "Retention",
    "assess", "canary_tasks", "current_version", "dashboard_data", "history", "is_store", "new_id", "percentile",
    "recognise", "resolve_redactions", "run_store", "score", "set_current", "tool_trace", "verify_answer", "version_of",
]
