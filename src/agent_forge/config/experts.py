"""Config of stage 3 (experts): SVF expert vectors trained by REINFORCE per domain, and their dispatch.

Every knob of `agent_forge.stages.experts` lives here; `agent-forge run experts.steps=20` overrides one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class ExpertsConfig(Section):
    """Stage 3: one SVF expert per domain (REINFORCE on verified rewards), a prompt router, dispatch."""

    domains: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic", "facts"],
        description="domains that get an expert (each is also a class of the router)")
    levels: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], description="task levels an expert trains and is measured on")
    matrices: str = Field(
        r"\.mlp\.[^.]+\.weight$",
        description="regex over parameter names choosing the matrices an expert scales (the reference: MLP only)")
    init_value: float = Field(
        0.1, description="initial logit of every singular-value scale (any constant reproduces W after the rescale)")
    max_mult: float = Field(
        2.0, gt=0, description="z = max_mult * sigmoid(logit): the largest factor a singular value may be scaled by")
    steps: int = Field(40, ge=1, description="REINFORCE steps per expert")
    prompts_per_step: int = Field(16, ge=1, description="train prompts rolled out per step")
    samples_per_prompt: int = Field(8, ge=2, description="answers sampled per prompt (the group of the group baseline)")
    temperature: float = Field(0.8, gt=0, description="sampling temperature of the rollouts")
    max_new_tokens: int = Field(24, ge=1, description="longest sampled answer in tokens")
    lr: float = Field(5e-2, gt=0, description="learning rate of the expert logits (Adam)")
    warmup_steps: int = Field(2, ge=0, description="linear lr warm-up of each expert's optimiser")
    kl_coef: float = Field(0.05, ge=0, description="weight of the KL to the entering model")
    normalize_std: bool = Field(False, description="divide each advantage by its group's reward std")
    val_every: int = Field(5, ge=1, description="steps between validation checks (checkpoint selection)")
    val_items: int = Field(24, ge=2, description="validation items per level of the expert's domain")
    test_items: int = Field(24, ge=2, description="test items per domain and level in the report")
    router_items: int = Field(48, ge=2, description="train prompts per domain the router is fitted on")
    router_l2: float = Field(1e-3, ge=0, description="L2 penalty of the router's logistic regression")
    lora_rank: int = Field(16, ge=1, description="rank of the LoRA the expert's parameter count is compared with")
    cem_family: str | None = Field(
        None, description="few-shot adaptation (off when unset): a task family no expert trains on, 'domain' "
        "(a domain outside `domains`, at `levels`) or 'domain:level' (a level outside `levels`); CEM searches "
        "the experts' mixture weights on a few of its train items and the report compares it with the base")
    cem_shots: int = Field(8, ge=1, description="few-shot examples (train split of the held-out family) CEM scores on")
    cem_test_items: int = Field(100, ge=2, description="test items per level of the held-out family, scored under "
                                "the base weights and under the CEM mixture")
    cem_population: int = Field(32, ge=2, description="CEM candidates per iteration")
    cem_elite_fraction: float = Field(0.2, gt=0, le=1, description="share of the CEM population refitted on")
    cem_iterations: int = Field(5, ge=1, description="CEM iterations of the few-shot search")
    dispatch: Literal["router", "self"] = Field(
        "router", description="which classifier routes prompts in auto dispatch: 'router' (logistic regression on "
        "the agent's hidden states, mode 2) or 'self' (the agent answers 'domain of: <prompt>' itself, mode 1); "
        "the stage trains and measures both")
    application: Literal["auto", "weights", "correction"] = Field(
        "auto", description="how an expert acts on the (ternary) latent model, in training and at answer time: "
        "'weights' writes W' = U diag(S z c) V^T into the latent weights, which BitLinear re-quantizes to ternary "
        "(option (a)); 'correction' keeps the ternary weights and adds W' - W beside each layer in full precision, "
        "as a packed layer serves it (option (b)); 'auto' trains the domain experts both ways and keeps the one "
        "with the higher mean validation accuracy (ties: 'correction'), reporting both on test")
    confidence_policy: bool = Field(
        True, description="let the agent's self-confidence decide in auto dispatch: at or above one threshold the "
        "base weights answer, else the top class's expert if its probability reaches a second threshold, else a "
        "mixture of the experts weighted by the class probabilities (both thresholds chosen on validation); the "
        "stage keeps it only where its validation accuracy beats the router threshold's, and measures both")
    classify_steps: int = Field(60, ge=1, description="supervised steps teaching the agent to classify prompts (mode 1)")
    classify_batch: int = Field(16, ge=1, description="prompts per step of the classification training")
    classify_lr: float = Field(5e-2, gt=0, description="learning rate (Adam) of the classification vector")
    reflection: bool = Field(
        True, description="self-reflection (STaR rationalization): the agent rewrites the worked steps of train tasks "
        "it failed, shown its attempt, the verdict and the reference answer; rewrites that lead to the right answer "
        "without the hint, with the first-pass successes, train one more expert, 'reasoning'")
    reflection_items: int = Field(16, ge=1, description="train tasks per domain and level the agent attempts in "
                                  "the worked form (domains whose tasks have worked steps)")
    reflection_max_new_tokens: int = Field(48, ge=1, description="longest worked answer or rewrite, in tokens")
    reflection_steps: int = Field(30, ge=1, description="supervised steps of the reasoning expert")
    reflection_batch: int = Field(8, ge=1, description="kept reasonings per step of the reasoning expert")
    reflection_lr: float = Field(5e-2, gt=0, description="learning rate (AdamW) of the reasoning expert's logits")
    packed_rank: int = Field(
        16, ge=1, description="top singular directions per matrix a packed save keeps (option (b): each expert is "
        "a rank-r correction beside the packed ternary matmul); a larger value than a matrix's rank keeps all")

    @model_validator(mode="after")
    def _checks(self):
        if not self.domains:
            raise ValueError("experts.domains must name at least one domain")
        if any(not 1 <= lvl <= 10 for lvl in self.levels) or not self.levels:
            raise ValueError("experts.levels must be levels in 1-10")
        if self.cem_family is not None:
            domain, _, level = self.cem_family.partition(":")
            if not domain or (level and not (level.isdigit() and 1 <= int(level) <= 10)):
                raise ValueError("experts.cem_family must be 'domain' or 'domain:level' (level in 1-10)")
            if domain in self.domains and (not level or int(level) in self.levels):
                raise ValueError(f"experts.cem_family {self.cem_family!r} is not held out: the {domain} expert "
                                 "trains on it (name another domain or a level outside experts.levels)")
        return self
