"""utils.digest: the one stable short hash of configs and other JSON-able values."""

import hashlib
import json

from agent_forge.config import ForgeConfig
from agent_forge.utils import digest


def test_digest_is_sorted_json_sha256_prefix_and_ignores_key_order():
    assert digest({"b": 1, "a": [2, "x"]}) == digest({"a": [2, "x"], "b": 1})
    assert digest({"a": 1}) == hashlib.sha256(b'{"a": 1}').hexdigest()[:16]
    assert digest({"a": 1}) != digest({"a": 2}) and len(digest([])) == 16


def test_config_digest_is_unchanged_by_the_shared_helper():
    """Run manifests record this hash: it must stay what it was before the helper existed."""
    cfg = ForgeConfig()
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    assert cfg.digest() == hashlib.sha256(blob.encode()).hexdigest()[:16] == digest(cfg.model_dump(mode="json"))
