"""Config of stage 2 (curriculum): baseline assessment, ten levels, RL cycles, sleep, dream, self-modeling.

Every knob of `agent_forge.stages.curriculum` lives here; `agent-forge run curriculum.cycle.lr=1e-4` overrides one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Section, UserPath


class AssessmentConfig(Section):
    """How the entering model's frontier is found: the highest level answered at or above `threshold`."""

    items_per_level: int = Field(32, ge=4, description="validation tasks per domain and level in the assessment")
    threshold: float = Field(0.8, gt=0, le=1, description="accuracy (fraction) at which a level counts as answered")
    # stop probing a domain after this many consecutive levels below the threshold (harder ones will fail too)
    patience: int = Field(2, ge=1, description="stop probing a domain after this many consecutive levels below the threshold")


class TaskMixConfig(Section):
    """How a cycle mixes the four kinds of tasks, and where organic data comes from.

    The three rolled-out kinds share a cycle's prompts by relative weight; organic worked solutions are
    supervised demonstrations, `organic` of them per cycle (they carry most of the signal at levels where
    no sample succeeds yet).
    """

    organic: int = Field(48, ge=0, description="organic demonstrations per cycle")
    synthetic: float = Field(0.6, ge=0, description="relative weight of plain generated tasks among a cycle's prompts")
    retrieval: float = Field(0.2, ge=0, description="relative weight of facts questions shown with retrieved passages")
    multi_agent: float = Field(0.2, ge=0, description="relative weight of solver/critic (multi-agent) tasks")
    # text/JSONL files with {"prompt", "answer"} records (or "prompt<TAB>answer" lines); empty: the task
    # corpora's worked solutions
    organic_paths: list[UserPath] = Field(
        default_factory=list,
        description="text/JSONL files of prompt-answer demonstrations; empty: the task corpora's worked solutions; "
                    "relative paths are taken from the working directory")
    retrieval_passages: int = Field(3, ge=1, description="passages in a retrieval prompt (the hit plus distractors)")
    critic_samples: int = Field(2, ge=1, description="critic verdicts sampled per solver answer in multi-agent tasks")
    # which domain a prompt comes from: "signal" weights each by p(1-p) (+ floor), p its validation accuracy at
    # its target level, where a group-baseline gradient has most to learn; "uniform" draws every domain equally
    domain_focus: Literal["signal", "uniform"] = Field(
        "signal", description="signal: draw domains by p(1-p) of their validation accuracy p (plus focus_floor); "
                              "uniform: every domain equally")
    focus_floor: float = Field(0.05, ge=0, description="weight every active domain keeps under domain_focus=signal")

    @model_validator(mode="after")
    def _some_weight(self):
        if self.synthetic + self.retrieval + self.multi_agent <= 0:
            raise ValueError("curriculum.mix: at least one rolled-out kind (synthetic, retrieval, multi_agent) needs a positive weight")
        return self


class CycleConfig(Section):
    """One RL cycle: sample a group per prompt, verify, update with the group-baseline policy gradient."""

    prompts: int = Field(16, ge=1, description="prompts rolled out per cycle")
    samples_per_prompt: int = Field(8, ge=2, description="answers sampled per prompt (the group of the group baseline)")
    temperature: float = Field(0.7, gt=0, description="sampling temperature of the rollouts")
    max_new_tokens: int = Field(24, ge=1, description="longest sampled answer in tokens")
    lr: float = Field(2e-4, gt=0, description="learning rate of the policy updates")
    warmup_steps: int = Field(10, ge=0, description="linear lr warm-up of the stage's optimiser")
    kl_coef: float = Field(0.02, ge=0, description="weight of the KL to the entering (reference) model")
    normalize_std: bool = Field(False, description="divide each advantage by its group's reward std")
    # STaR-style: verified samples join the step as demonstrations; worked solutions where no sample succeeded
    replay_verified: bool = Field(True, description="verified samples join the step as demonstrations (STaR-style)")
    demonstrate_unsolved: bool = Field(True, description="worked solutions are shown for prompts no sample solved")
    demo_coef: float = Field(1.0, ge=0, description="weight of the demonstrations' supervised loss")
    replay_old: int = Field(4, ge=0, description="verified items from earlier levels replayed in each step")
    # supervised steps after the policy-gradient step, each on fresh organic demonstrations plus replay_old
    # items of earlier levels: a step costs a fraction of a rollout, and on the tiny run one step per cycle
    # left arithmetic level 1 far below what plain supervision on the same mix reaches in 60 steps
    demo_steps: int = Field(4, ge=0, description="extra supervised steps per cycle on organic demonstrations")
    reasoning_weight: float = Field(0.1, ge=0, description="weight of the thought-helped signal in the reward")
    self_awareness_prefix: bool = Field(
        True, description="some prompts start with a line naming the level, domain and recent accuracy")
    prefix_probability: float = Field(0.5, ge=0, le=1, description="share of prompts shown with the prefix")
    use_thoughts: bool = Field(True, description="let a thinking model (Quiet-STaR head) think before some answers")
    # 0.25: on the default run, half of the samples after an 8-token thought left arithmetic level 1 unlearned
    # in 60 cycles (the mastery checks and the test split answer without thoughts)
    thought_probability: float = Field(0.25, ge=0, le=1, description="share of prompts answered after a thought")
    thought_tokens: int = Field(8, ge=1, description="longest internal thought, in tokens")


class ControllerConfig(Section):
    """Edge-of-chaos difficulty inside a level, one controller per domain: keep its success rate in [low, high]."""

    low: float = Field(0.55, ge=0, le=1, description="success rate below which the difficulty goes down")
    high: float = Field(0.75, ge=0, le=1, description="success rate above which the difficulty goes up")
    step: float = Field(0.15, gt=0, le=1, description="change of the difficulty per adjustment")
    initial: float = Field(0.5, ge=0, le=1, description="difficulty at the start of each level")
    smoothing: float = Field(0.5, ge=0, lt=1, description="EMA factor on the observed success rate")
    min_difficulty: float = Field(0.25, ge=0, le=1, description="least share of prompts at the level being learned")

    @model_validator(mode="after")
    def _band(self):
        if self.low >= self.high:
            raise ValueError(f"curriculum.controller.low ({self.low}) must be below high ({self.high})")
        return self


class SleepConfig(Section):
    """Consolidation: replay of verified successes from every level so far, then weight averaging."""

    enabled: bool = Field(True, description="sleep every few cycles")
    every: int = Field(4, ge=1, description="cycles between sleeps")
    steps: int = Field(6, ge=0, description="supervised replay steps per sleep (0: averaging only)")
    batch_size: int = Field(32, ge=1, description="replayed examples per step")
    lr: float = Field(2e-4, gt=0, description="learning rate of the replay steps")
    # weight of the consolidated (slow) weights in the average; 0 keeps the current weights unchanged
    average: float = Field(0.3, ge=0, lt=1, description="weight of the consolidated (slow) weights in the average; 0 keeps the current weights")


class DreamConfig(Section):
    """Exploration: high-temperature answers to fresh variations of the level's tasks, kept only if verified."""

    enabled: bool = Field(True, description="dream every few cycles")
    every: int = Field(4, ge=1, description="cycles between dreams")
    prompts: int = Field(16, ge=1, description="fresh tasks per dream")
    samples: int = Field(4, ge=1, description="answers sampled per task")
    temperature: float = Field(1.5, gt=0, description="sampling temperature of the dream")


class SelfModelConfig(Section):
    """Self-modeling: train on own verified generations across temperatures and predict own correctness."""

    enabled: bool = Field(True, description="self-modeling every few cycles")
    every: int = Field(4, ge=1, description="cycles between self-modeling rounds")
    temperatures: list[float] = Field(
        default_factory=lambda: [0.3, 0.7, 1.0, 1.3], description="temperatures the model answers at")
    prompts: int = Field(16, ge=1, description="training prompts per round")
    steps: int = Field(4, ge=0, description="supervised steps per round on the verified answers and confidence labels")
    lr: float = Field(2e-4, gt=0, description="learning rate of those steps")
    ece_bins: int = Field(10, ge=2, description="bins of the expected calibration error")
    calibration_items: int = Field(48, ge=8, description="tasks on which calibration is measured")


class GrokfastConfig(Section):
    """Grokfast EMA gradient filter (Lee et al. 2024) on the stage's updates.

    Off by default: on the tiny profile its amplified slow gradients made the policy's KL to the reference
    blow up (0.1 -> 2-4 within 14 cycles) while plain updates stayed near 0.1; see the ablation benchmark.
    """

    enabled: bool = Field(False, description="filter the stage's gradients with Grokfast")
    alpha: float = Field(0.98, ge=0, lt=1, description="EMA factor of the slow gradient")
    lamb: float = Field(2.0, ge=0, description="amplification of the slow gradient added to each update")


class CurriculumConfig(Section):
    """Stage 2: find the frontier, then climb up to ten levels above it with RL cycles."""

    domains: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic", "facts"], description="task domains of the curriculum")
    levels: int = Field(10, ge=1, le=10, description="curriculum levels above the baseline")
    max_cycles_per_level: int = Field(15, ge=1, description="most RL cycles spent on one level")
    min_cycles_per_level: int = Field(2, ge=1, description="fewest RL cycles spent on one level")
    mastery_threshold: float = Field(0.8, gt=0, le=1, description="validation accuracy (fraction) at which a level counts as mastered")
    val_items: int = Field(48, ge=4, description="validation items per domain for the mastery check")
    confirm_mastery: bool = Field(
        True, description="a check that reaches the threshold must be confirmed on val_items fresh validation items")
    test_items: int = Field(40, ge=4, description="test items per (domain, level) in the final report")
    check_every: int = Field(2, ge=1, description="cycles between validation checks for mastery")
    eval_levels_above: int = Field(3, ge=1, description="test levels reported above each baseline frontier")
    replay_capacity: int = Field(256, ge=1, description="verified pairs kept per (domain, level) for replay")
    replay_seed_items: int = Field(48, ge=0, description="train items per mastered level checked to seed replay")
    max_cycles: int | None = Field(
        126, ge=1,
        description="stop starting new cycles after this many in all, the same on every machine (126: what the "
                    "reference tiny run fitted into its former 540 s budget, so its numbers reproduce); null: none")
    time_budget_s: float | None = Field(
        None, gt=0, description="also stop starting new cycles after this many seconds (a wall-clock cap: how many "
                                "cycles fit then differs between machines and thread counts); null: none")
    assessment: AssessmentConfig = Field(AssessmentConfig(), description="how the entering model's frontier is found")
    mix: TaskMixConfig = Field(TaskMixConfig(), description="the kinds of tasks a cycle mixes")
    cycle: CycleConfig = Field(CycleConfig(), description="one RL cycle")
    controller: ControllerConfig = Field(ControllerConfig(), description="difficulty control inside a level")
    sleep: SleepConfig = Field(SleepConfig(), description="consolidation by replay and weight averaging")
    dream: DreamConfig = Field(DreamConfig(), description="exploration at high temperature, kept only if verified")
    self_model: SelfModelConfig = Field(SelfModelConfig(), description="training on own verified answers and predicting own correctness")
    grokfast: GrokfastConfig = Field(GrokfastConfig(), description="Grokfast gradient filter (off by default)")
    plots: bool = Field(True, description="write the stage's plots (PNG) under plots/")

    @model_validator(mode="after")
    def _cycles(self):
        if self.min_cycles_per_level > self.max_cycles_per_level:
            raise ValueError("curriculum.min_cycles_per_level must not exceed max_cycles_per_level")
        return self
