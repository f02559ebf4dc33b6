"""Evaluating a population of recipes: in this process (default) or on Ray actors, with the same results.

An evaluator takes a list of recipes and yields `(index, Fitness, seconds)` in list order. `LocalEvaluator`
calls a fitness function directly. `RayEvaluator` starts `num_actors` actors (one per device, or CPU workers),
each building its own fitness function from a picklable factory, and deals the recipes out round-robin;
since building and scoring a recipe is deterministic, the results equal the local ones for the same seed.
Exercise: `python -m pytest tests/stages/evomerge/test_ray_population.py` (real merged models on a local Ray).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

from ...errors import ForgeError
from .recipe import Recipe


@dataclass(frozen=True)
class Fitness:
    """Validation score of a candidate: `score` decides, `tiebreak` (log-likelihood) breaks ties."""

    score: float
    tiebreak: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[float, float]:
        # rounded so that float noise from a different thread count cannot reorder candidates
        return (round(float(self.score), 9), round(float(self.tiebreak), 6))

    def to_json(self) -> dict:
        return {"score": float(self.score), "tiebreak": float(self.tiebreak), "details": self.details}

    @classmethod
    def from_json(cls, obj: dict) -> "Fitness":
        return cls(float(obj["score"]), float(obj.get("tiebreak", 0.0)), dict(obj.get("details", {})))


FitnessFn = Callable[[Recipe], Fitness]


class Evaluator(Protocol):
    def evaluate(self, recipes: Sequence[Recipe]) -> Iterator[tuple[int, Fitness, float]]: ...

    def close(self) -> None: ...


def timed(fitness: FitnessFn, recipe: Recipe) -> tuple[Fitness, float]:
    start = time.perf_counter()
    result = fitness(recipe)
    return result, time.perf_counter() - start


class LocalEvaluator:
    """Evaluates recipes one after another in this process."""

    def __init__(self, fitness: FitnessFn):
        self.fitness = fitness

    def evaluate(self, recipes: Sequence[Recipe]) -> Iterator[tuple[int, Fitness, float]]:
        for index, recipe in enumerate(recipes):
            result, seconds = timed(self.fitness, recipe)
            yield index, result, seconds

    def close(self) -> None:
        pass


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a cluster address nothing listens on (ray.init itself keeps retrying for minutes)."""
    if address == "auto":
        return  # resolved by Ray from the local node's session files; it fails quickly when there is none
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as error:
        raise ForgeError(f"cannot join the Ray cluster at {address!r}: {error}") from None


class RayEvaluator:
    """Evaluates recipes on Ray actors; `fitness_factory()` runs inside each actor to build its fitness function."""

    def __init__(self, fitness_factory: Callable[[], FitnessFn], num_actors: int = 2, num_gpus_per_actor: float = 0.0,
                 threads_per_actor: int = 1, address: str | None = None):
        if not ray_available():
            raise ForgeError("evomerge.backend 'ray' needs Ray: pip install 'agent-forge[ray]'")
        import ray

        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
                # an existing cluster brings its own resources; Ray refuses num_cpus when joining one
                try:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise ForgeError(f"cannot join the Ray cluster at {address!r}: {str(error).splitlines()[0]}") from None
            else:
                ray.init(num_cpus=max(num_actors, 1), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            self._owns_ray = True
        else:
            self._owns_ray = False

        @ray.remote(num_cpus=1, num_gpus=num_gpus_per_actor)
        class _Worker:
            def __init__(self, factory, threads):
                import torch

                torch.set_num_threads(threads)
                self.fitness = factory()

            def run(self, recipe_json):
                result, seconds = timed(self.fitness, Recipe.from_json(recipe_json))
                return result.to_json(), seconds

        self._ray = ray
        self._actors = [_Worker.remote(fitness_factory, threads_per_actor) for _ in range(max(num_actors, 1))]

    def evaluate(self, recipes: Sequence[Recipe]) -> Iterator[tuple[int, Fitness, float]]:
        futures = [self._actors[i % len(self._actors)].run.remote(r.to_json()) for i, r in enumerate(recipes)]
        for index, future in enumerate(futures):
            result, seconds = self._ray.get(future)
            yield index, Fitness.from_json(result), seconds

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._owns_ray:
            self._ray.shutdown()
