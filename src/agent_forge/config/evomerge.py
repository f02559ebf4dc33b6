"""Config of stage 1.1 (EvoMerge): the merge methods searched, the evolution's knobs, and how fitness is measured.

Defaults are the tiny profile's: a genetic algorithm over per-layer-group recipes, scored by validation exact
match (the evaluation fast path) with log-likelihood breaking ties. Exercise:
`agent-forge run --config tiny evomerge.generations=3`.
"""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section

InterpMethod = Literal["linear", "slerp"]
VectorMethod = Literal["task_arithmetic", "ties", "dare_ties", "dare_linear"]
LayerKind = Literal["frankenmerge", "dfs"]


class MutationConfig(Section):
    """Variation rates: `sigma` is the Gaussian step as a fraction of each parameter's range."""

    sigma: float = Field(0.08, gt=0, le=1, description="Gaussian mutation step, as a fraction of each parameter's range")
    gene_rate: float = Field(0.35, gt=0, le=1, description="chance that each continuous gene gets noise")
    method_flip: float = Field(0.1, ge=0, le=1, description="chance a child switches one step's method")
    structure_flip: float = Field(0.05, ge=0, le=1, description="chance a child adds or removes a step")
    path_edit: float = Field(0.3, ge=0, le=1, description="chance a child's layer path gets one edit")
    reseed: float = Field(0.1, ge=0, le=1, description="chance a child draws new DARE masks")


class EvoMergeConfig(Section):
    """Stage 1.1: evolve a merge recipe of the specialists; the champion is the stage's model."""

    optimizer: Literal["ga", "cmaes"] = Field(
        "ga", description="ga: genetic algorithm over whole recipes; cmaes: CMA-ES over one recipe's continuous parameters")
    population_size: int = Field(16, ge=2, description="candidate merges per generation")
    generations: int = Field(12, ge=1, description="most generations evolved")
    patience: int = Field(4, ge=1, description="stop after this many generations without a better champion")
    elite: int = Field(2, ge=0, description="best candidates carried unchanged into the next generation (ga)")
    tournament_size: int = Field(3, ge=1, description="candidates drawn per tournament when choosing a parent (ga)")
    crossover_rate: float = Field(0.5, ge=0, le=1, description="chance a child is a crossover of two parents (ga)")
    mutation: MutationConfig = Field(MutationConfig(), description="variation rates of the genetic algorithm")
    seed_combinations: bool = Field(True, description="start from {linear,slerp} x {ties,dare} x {frankenmerge,dfs}")
    interp_methods: list[InterpMethod] = Field(
        default_factory=lambda: ["linear", "slerp"], description="interpolation merge methods searched")
    vector_methods: list[VectorMethod] = Field(
        default_factory=lambda: ["task_arithmetic", "ties", "dare_ties", "dare_linear"],
        description="task-vector merge methods searched (they need the common base, seed_stage.base, or the tiny profile's)")
    layer_kinds: list[LayerKind] = Field(
        default_factory=lambda: ["frankenmerge", "dfs"],
        description="layer-space steps searched: frankenmerge (stack chosen blocks) and dfs (data-flow-space layer paths)")
    layers_per_group: int = Field(1, ge=1, description="transformer blocks sharing one set of merge parameters")
    split_modules: bool = Field(False, description="separate merge parameters for each block's attention and MLP")
    dfs_repeats: int = Field(2, ge=1, description="r: DFS slots = total layers of the pool x r")
    max_depth_factor: float = Field(1.5, gt=0, description="layer-space results have at most this x the source depth")
    cmaes_method: Literal["linear", "slerp", "task_arithmetic", "ties", "dare_ties", "dare_linear"] = Field(
        "task_arithmetic", description="cmaes: the merge method whose parameters are searched")
    cmaes_sigma: float = Field(0.15, gt=0, le=1, description="cmaes: initial step size, as a fraction of each parameter's range")
    # fitness: validation split only; the test split is for the report
    domains: list[str] | None = Field(None, description="task domains to score; default: seed_stage.specialists")
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], description="task levels of the fitness (validation split)")
    val_items_per_level: int = Field(25, ge=1, description="validation tasks per domain and level scored per candidate")
    objective: Literal["mean", "balanced", "retain"] = Field(
        "mean", description="mean: mean accuracy over domains; balanced: mean plus the worst domain, halved; retain: "
        "mean minus 1 point per percent by which a specialist's own-domain gain over the base falls short of keep_share")
    keep_share: float = Field(0.7, gt=0, le=1, description="retain objective: the share of each specialist's own-domain "
                              "gain over the base a merge should keep")
    batch_size: int = Field(128, ge=1, description="evaluation batch size")
    backend: Literal["local", "ray"] = Field(
        "local", description="local: score candidates in this process; ray: in parallel Ray actors (pip install ray)")
    ray_actors: int = Field(2, ge=1, description="ray backend: number of scoring actors")
    ray_address: str | None = Field(
        None, description="ray backend: the Ray cluster to join ('auto', or ray://host:10001); none: the RAY_ADDRESS "
        "environment variable if set, else a local Ray started with ray_actors CPUs. On a cluster every node must "
        "see the run folder at the same path (a shared filesystem): actors load the models from it")

    @model_validator(mode="after")
    def _check(self):
        if self.elite >= self.population_size:
            raise ValueError(f"elite ({self.elite}) must be smaller than population_size ({self.population_size})")
        if not self.interp_methods and not self.vector_methods:
            raise ValueError("at least one of interp_methods / vector_methods must be non-empty")
        return self
