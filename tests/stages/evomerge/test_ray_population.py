"""The Ray population evaluator scores real merged models exactly as the in-process evaluator does.

Starts a real local Ray (2 CPUs, 2 actors), lets each actor rebuild the stage's own fitness function
(`FitnessSpec.build`: load three saved tiny Llamas, merge a recipe, score it on validation tasks) and compares
every candidate's score, log-likelihood tie-breaker and per-domain details with `LocalEvaluator` on the same
recipes, then checks the evaluator shuts down the Ray it started. About 10 s on 2 busy cores.
Run: `python -m pytest tests/stages/evomerge/test_ray_population.py`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

import numpy as np
import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
from agent_forge.stages.evomerge.fitness import FitnessSpec
from agent_forge.stages.evomerge.groups import LayerGrouping
from agent_forge.stages.evomerge.population import LocalEvaluator, RayEvaluator, ray_available
from agent_forge.stages.evomerge.space import SearchSpace
from agent_forge.tasks import alphabet

pytestmark = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install -e '.[dev]')")

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, max_position_embeddings=128)


def _perturbed(model, scale: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> FitnessSpec:
    """The fitness description the stage hands to Ray: saved base + three specialists, validation settings."""
    root = tmp_path_factory.mktemp("ray-models")
    tok = build_tiny_tokenizer(alphabet())
    save_model(build_tiny_model(tok, TINY, seed=0), tok, root / "base")
    specialists = []
    for i, domain in enumerate(["arithmetic", "strings", "logic"]):
        # perturbations large enough that merges differ measurably in log-likelihood
        save_model(_perturbed(build_tiny_model(tok, TINY, seed=0), 0.05, i + 1), tok, root / domain)
        specialists.append(str(root / domain))
    grouping = LayerGrouping(TINY.num_hidden_layers, 1)  # the stage sizes its search space from it, so do we
    space = SearchSpace(num_models=3, num_layers=TINY.num_hidden_layers, num_groups=grouping.num_groups, dfs_repeats=2)
    return FitnessSpec(base=str(root / "base"), specialists=tuple(specialists),
                       domains=("arithmetic", "strings", "logic"), levels=(1, 2), items_per_level=4, seed=0,
                       batch_size=16, objective="mean", space=space, layers_per_group=1)


def test_ray_actors_score_real_merges_like_this_process(spec):
    rng = np.random.default_rng(7)
    recipes = spec.space.seed_recipes(rng)[:3] + [spec.space.random_recipe(rng) for _ in range(5)]
    local = list(LocalEvaluator(spec.build()).evaluate(recipes))

    import ray

    assert not ray.is_initialized()
    evaluator = RayEvaluator(spec.build, num_actors=2)  # starts (and owns) a local Ray with 2 CPUs
    try:
        remote = list(evaluator.evaluate(recipes))
    finally:
        evaluator.close()
    assert not ray.is_initialized()  # the evaluator shut down the Ray it started

    assert [i for i, _, _ in remote] == list(range(len(recipes)))
    for (_, mine, _), (_, theirs, seconds) in zip(local, remote):
        # accuracies are exact-match counts; the log-likelihood is a float sum computed the same way on one
        # thread in both places, so it agrees to rounding
        assert theirs.score == pytest.approx(mine.score, abs=1e-9)
        assert theirs.tiebreak == pytest.approx(mine.tiebreak, rel=1e-6, abs=1e-6)
        assert theirs.details == mine.details
        assert seconds > 0
    # the recipes really are different models, so agreeing is not trivially true
    assert len({round(f.tiebreak, 4) for _, f, _ in local}) >= 4


@pytest.mark.slow  # `ray start --head` brings up a whole node (about 20 s)
def test_ray_actors_on_a_started_cluster_score_like_this_process(spec):
    """`ray start --head` stands in for a cluster's head node; the evaluator joins it by address, as on a cluster."""
    import ray

    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                              f"--temp-dir={temp_dir}"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        rng = np.random.default_rng(3)
        recipes = [spec.space.random_recipe(rng) for _ in range(3)]
        local = list(LocalEvaluator(spec.build()).evaluate(recipes))
        evaluator = RayEvaluator(spec.build, num_actors=2, address=f"127.0.0.1:{port}")
        try:
            # joined, not started: the cluster's 2 CPUs, not a fresh local Ray
            assert ray.cluster_resources().get("CPU") == 2
            remote = list(evaluator.evaluate(recipes))
        finally:
            evaluator.close()
        assert not ray.is_initialized()  # the driver disconnected ...
        for (_, mine, _), (_, theirs, _) in zip(local, remote):
            assert theirs.score == pytest.approx(mine.score, abs=1e-9)
            assert theirs.details == mine.details
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_joining_an_unreachable_cluster_is_a_one_line_error(spec):
    with pytest.raises(ForgeError, match="cannot join the Ray cluster") as error:
        RayEvaluator(spec.build, num_actors=1, address=f"127.0.0.1:{_free_port()}")
    assert "\n" not in str(error.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
