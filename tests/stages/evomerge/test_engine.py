"""The evolution loop: reproducible for a seed, improving, patient, resumable after SIGKILL, same on Ray.

Uses a synthetic fitness (tests/stages/evomerge/synthetic.py) so the loop is tested on its own; the stage test
runs it with real validation accuracy. Run: `python -m pytest tests/stages/evomerge/test_engine.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_forge.stages.evomerge.engine import Evolution, LoopSettings
from agent_forge.stages.evomerge.ga import GASettings, GeneticStrategy
from agent_forge.stages.evomerge.population import Fitness, LocalEvaluator, ray_available

from .synthetic import SPACE, run_search


def _lineage(path: Path) -> list[dict]:
    """Lineage records without their timings (the only thing allowed to differ between equal runs)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r.pop("seconds")
    return records


def test_same_seed_same_search_other_seed_other_search(tmp_path):
    a = run_search(tmp_path / "a", seed=3)
    b = run_search(tmp_path / "b", seed=3)
    c = run_search(tmp_path / "c", seed=4)
    assert _lineage(a.lineage_path) == _lineage(b.lineage_path)
    assert a.best.recipe.key() == b.best.recipe.key()
    assert _lineage(a.lineage_path) != _lineage(c.lineage_path)


def test_search_improves_and_records_every_candidate(tmp_path):
    result = run_search(tmp_path, seed=0, generations=8, plot=True)
    history = result.history
    assert len(history) == 8 and result.stop_reason.startswith("generation limit")
    best_so_far = [h["best_so_far"] for h in history]
    assert best_so_far == sorted(best_so_far) and best_so_far[-1] > best_so_far[0]
    records = _lineage(result.lineage_path)
    assert len(records) == result.evaluations == len({r["id"] for r in records})
    first = [r for r in records if r["generation"] == 0]
    combos = {r["label"] for r in first if r["origin"] == "seed-combination"}
    assert combos == {f"{i}+{v}+{k}" for i in ("linear", "slerp") for v in ("ties", "dare_ties") for k in ("frankenmerge", "dfs")}
    ids = {r["id"] for r in records}
    for r in records:
        assert r["fitness"]["score"] is not None and all(p in ids and p < r["id"] for p in r["parents"])
        assert r["origin"] in {"seed-combination", "random", "mutation", "crossover"}
    assert {"mutation", "crossover"} <= {r["origin"] for r in records}
    assert result.best.fitness.score == max(r["fitness"]["score"] for r in records)
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_patience_stops_a_search_that_cannot_improve(tmp_path):
    strategy = GeneticStrategy(SPACE, GASettings(population_size=6, elite=1))
    loop = Evolution(SPACE, strategy, LocalEvaluator(lambda recipe: Fitness(0.5)), LoopSettings(generations=20, patience=3),
                     tmp_path, progress=False, plot=False)
    result = loop.run()
    assert len(result.history) == 4 and "no improvement for 3" in result.stop_reason


def test_a_finished_search_is_not_recomputed(tmp_path):
    first = run_search(tmp_path, seed=1, generations=3)
    calls = []
    strategy = GeneticStrategy(SPACE, GASettings(population_size=12, elite=2))
    again = Evolution(SPACE, strategy, LocalEvaluator(lambda r: calls.append(r) or Fitness(0.0)),
                      LoopSettings(generations=3, patience=10, seed=1), tmp_path, fingerprint="synthetic",
                      progress=False, plot=False).run()
    assert calls == [] and again.best.recipe.key() == first.best.recipe.key()


def test_killed_search_resumes_from_the_last_finished_generation(tmp_path):
    """SIGKILL a real process mid-search, resume in this one: lineage and champion equal an uninterrupted run."""
    generations = 6
    reference = run_search(tmp_path / "reference", seed=5, generations=generations)
    killed_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "evomerge.synthetic", str(killed_dir), "5", str(generations), "0.03"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until generation 2 is checkpointed and generation 3 is under way
            state = killed_dir / "state.json"
            if state.exists() and json.loads(state.read_text())["generation"] >= 3:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the search subprocess did not reach generation 3 in time")
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    checkpointed = json.loads((killed_dir / "state.json").read_text())["generation"]
    assert 3 <= checkpointed < generations
    resumed = run_search(killed_dir, seed=5, generations=generations)
    assert _lineage(resumed.lineage_path) == _lineage(reference.lineage_path)
    assert resumed.best.recipe.key() == reference.best.recipe.key()
    assert resumed.history[-1]["best_so_far"] == reference.history[-1]["best_so_far"]


@pytest.mark.slow  # starting a local Ray takes 30-80 s on this machine
@pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'agent-forge[ray]')")
def test_ray_population_evaluation_gives_the_same_search(tmp_path):
    from agent_forge.stages.evomerge.population import RayEvaluator

    from .synthetic import make_synthetic_fitness

    import ray

    local = run_search(tmp_path / "local", seed=2, generations=3, population=8)
    # the actors import the synthetic fitness from this test package, so they need its folder on their path
    tests_root = str(Path(__file__).parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests_root, os.environ.get("PYTHONPATH", "")])}})
    evaluator = RayEvaluator(make_synthetic_fitness, num_actors=2)
    try:
        remote = run_search(tmp_path / "ray", seed=2, generations=3, population=8, evaluator=evaluator)
    finally:
        evaluator.close()
        ray.shutdown()
    assert _lineage(remote.lineage_path) == _lineage(local.lineage_path)
