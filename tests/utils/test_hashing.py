"""utils.digest: the one stable short hash of configs and other JSON-able values."""

import hashlib
import json

from agent_forge.config import EXECUTION_FIELDS, ForgeConfig
from agent_forge.utils import digest


def test_digest_is_sorted_json_sha256_prefix_and_ignores_key_order():
    assert digest({"b": 1, "a": [2, "x"]}) == digest({"a": [2, "x"], "b": 1})
    assert digest({"a": 1}) == hashlib.sha256(b'{"a": 1}').hexdigest()[:16]
    assert digest({"a": 1}) != digest({"a": 2}) and len(digest([])) == 16


def test_config_digest_is_the_shared_helper_over_the_config_without_execution_settings():
    """Run manifests record this hash: `utils.digest` of the JSON dump, less the execution-only fields."""
    cfg = ForgeConfig()
    kept = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in EXECUTION_FIELDS}
    blob = json.dumps(kept, sort_keys=True)
    assert cfg.digest() == hashlib.sha256(blob.encode()).hexdigest()[:16] == digest(kept)
    assert EXECUTION_FIELDS == {"name", "run_root", "threads"}


def test_execution_settings_do_not_change_the_hash_and_results_settings_do():
    cfg = ForgeConfig()
    same = [cfg.model_copy(update={"threads": 1}), cfg.model_copy(update={"run_root": "/elsewhere"}),
            cfg.model_copy(update={"name": "renamed"})]
    assert {c.digest() for c in same} == {cfg.digest()}
    different = [cfg.model_copy(update={"seed": 1}), cfg.model_copy(update={"device": "cpu"}),
                 cfg.model_copy(update={"dtype": "float32"}),
                 cfg.model_copy(update={"report": cfg.report.model_copy(update={"items_per_level": 3})})]
    assert len({c.digest() for c in different} | {cfg.digest()}) == len(different) + 1
