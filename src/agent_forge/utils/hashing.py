"""One stable short hash for configs and other JSON-able values: what identifies a run, a resume checkpoint or a
compiled kernel. Exercise: `python -c "from agent_forge.utils import digest; print(digest({'b': 1, 'a': [2]}))"`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(obj: Any) -> str:
    """The first 16 hex digits of the SHA-256 of `obj` as JSON with sorted keys (stable across runs and dict order).

    `obj` must be JSON-serialisable (dump pydantic models with `model_dump(mode="json")` first).
    """
    blob = json.dumps(obj, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
