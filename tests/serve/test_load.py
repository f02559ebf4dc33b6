"""The load benchmark at a smaller scale (slow): concurrent clients against the real server, zero errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serve_load.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_serve_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_small_load_has_no_errors_and_batching_changes_no_answer(tmp_path):
    bench = _bench_module()
    agent = bench.build_bundle(tmp_path / "bundle")
    batched, one = bench.run_load(agent, clients=8, requests=5, max_tokens=16, timeout=300)
    for phase in (batched, one):
        assert phase.errors == [] and phase.requests == 40, phase.errors[:3]
        assert phase.completion_tokens == 40 * 16  # the untrained bundle never stops early
    assert batched.answers == one.answers  # greedy: the batch changes nothing
    assert batched.percentile(50) <= batched.percentile(99)
