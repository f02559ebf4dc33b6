"""Config of stage 4.2 (tools): teaching the agent to call the calculator and to search its memory.

Every knob of `agent_forge.stages.tools` lives here; `agent-forge run tools.sft_steps=200` overrides one.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Section


class ToolsConfig(Section):
    """Stage 4.2: supervised tool-use traces, then policy gradient with the tools in the loop."""

    levels: list[int] = Field(
        default_factory=lambda: list(range(1, 11)), description="task levels the stage trains and measures")
    call_below: float = Field(
        95.0, ge=0, le=100,
        description="a level of a tool domain gets tool traces when the entering agent's validation accuracy on it "
                    "(%) is below this; at or above it the agent keeps answering by itself (no call). The tools "
                    "are exact, so an agent right 92% of the time on a level still gains by calling")
    memory_k: int = Field(
        1, ge=1, le=20,
        description="passages a memory search returns to the model; the traces search for the opening of the "
                    "sentence they need, which the store ranks first, so one is enough and keeps traces short")
    max_calls: int = Field(8, ge=1, le=32, description="tool calls allowed per answer")
    sft_steps: int = Field(2000, ge=0, description="supervised steps on tool traces and no-call replay")
    batch_size: int = Field(16, ge=1, description="sequences per supervised step")
    lr: float = Field(2e-3, gt=0, description="learning rate of the supervised phase (AdamW, warm-up then cosine)")
    warmup_steps: int = Field(30, ge=0, description="linear warm-up steps of the supervised phase")
    no_call_share: float = Field(
        0.5, ge=0, le=1,
        description="share of each batch that is no-call replay: the entering agent's own verified answers on "
                    "levels and domains where it needs no tool")
    replay_per_level: int = Field(
        640, ge=1, description="train tasks per non-tool level the entering agent answers for the no-call replay "
                               "(those it gets right are replayed). At 160 (earlier runs) the default run's "
                               "1,529 replayed answers, each seen about ten times, did not hold logic level 4 "
                               "(85 -> 20%); at 640, 6,133 answers held it at 70% (one seed, 20 test items per level)")
    sample_by_domain: bool = Field(
        True, description="draw a supervised step's tool domain first, then its level (facts, with few levels short "
                           "enough to train, then gets as many steps as arithmetic); false: every (domain, level) alike")
    focus_every: int = Field(
        250, ge=0, description="every this many supervised steps, measure each tool level with its tools on "
                               "`focus_items` validation tasks and draw that domain's levels in proportion to "
                               "their error rate from then on (0: every level of a domain alike throughout)")
    focus_items: int = Field(8, ge=1, description="validation tasks per tool level at each focus measurement")
    focus_floor: float = Field(
        0.1, ge=0, le=1, description="least sampling weight of a tool level at focus (a mastered level keeps some "
                                     "practice); a level's weight is max(error rate, this)")
    max_trace_tokens: int = Field(
        1024, ge=64, description="longest training trace (prompt, calls, responses, answer) in tokens; longer "
                                "traces are left out of training and the report says how many")
    rl_steps: int = Field(20, ge=0, description="policy-gradient steps with the tools executing in the loop")
    rl_prompts: int = Field(8, ge=1, description="prompts per policy-gradient step")
    rl_samples: int = Field(4, ge=2, description="answers sampled per prompt (the group of the group baseline)")
    rl_temperature: float = Field(0.7, gt=0, description="sampling temperature of the policy-gradient rollouts")
    rl_lr: float = Field(2e-4, gt=0, description="learning rate of the policy-gradient phase")
    kl_coef: float = Field(0.05, ge=0, description="weight of the KL to the supervised model in the RL phase")
    freeze_expert_matrices: bool = Field(
        True, description="leave the matrices the experts scale untouched, so the experts' SVD stays exact")
    require_gain: bool = Field(
        True, description="pass a trained model on only if its validation accuracy with tools beats the entering "
                          "agent's (measured the same way, tools attached); otherwise the stage passes the entering "
                          "agent on with the tools attached and says so. false: keep the better trained model")
    val_items: int = Field(12, ge=2, description="validation items per domain and level (frontier, selection)")
    test_items: int = Field(20, ge=2, description="test items per domain and level in the report")

    @model_validator(mode="after")
    def _checks(self):
        if not self.levels or any(not 1 <= lvl <= 10 for lvl in self.levels):
            raise ValueError("tools.levels must be levels in 1-10")
        return self
