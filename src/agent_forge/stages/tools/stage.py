"""The tools stage's run: memory store, tool vocabulary, frontier, supervised traces, RL with tools, report.

Resumable per phase: the memory store, the supervised model and the RL model are written under
`ctx.scratch_dir` with a state file naming the finished phases (and a digest of the config and the input); a
rerun continues with the next phase. Every random stream is a `ctx.sub_seed`.

Exercise: `pytest tests/stages/tools`.
"""

from __future__ import annotations

import copy
import random
import re
import shutil
import time
from pathlib import Path

import torch

from ...errors import ForgeError
from ...evaluation import evaluate_agent, fast_exact_match, percent
from ...evaluation.report import TOOL_ROUND_TOKENS
from ...evaluation.table import cell, rows_table
from ...inference import answer
from ...models import encode_segments, load_agent, save_agent
from ...models.special_tokens import add_special_tokens
from ...stage_contract import StageContext, StageResult
from ...tasks import DOMAINS, KnowledgeBase, make_tasks, task_grid, verify
from ...tools import (
    TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, ToolUse, builtin_registry, called_tool,
    final_answer,
)
from ...training.policy_gradient import PolicyGradientTrainer
from ...training.supervised import train_supervised
from ...utils.progress import progress
from ...utils.resume import load_phase_state, save_phase_state
from .traces import Trace, arithmetic_trace, facts_trace, no_call_trace, registry_runner

TRACES_PER_LEVEL = 640  # tool-trace tasks drawn per level (facts traces run real memory searches: not free)
TOOL_OF_DOMAIN = {"arithmetic": "calculator", "facts": "memory_search"}
# the markers are whole tokens (as in Hermes-style chat models); the JSON punctuation a char vocabulary lacks
TOOL_TOKENS = [TOOL_CALL_OPEN, TOOL_CALL_CLOSE, TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE, "{", "}", '"', "_", "|", "/"]
_RESPONSE = re.compile(re.escape(TOOL_RESPONSE_OPEN) + ".*?" + re.escape(TOOL_RESPONSE_CLOSE), re.S)


def focus_weights(accuracy: dict, floor: float) -> dict:
    """Sampling weight per level from its measured accuracy (0-1): its error rate, at least `floor`."""
    return {k: max(1.0 - a, floor) for k, a in accuracy.items()}


def add_tool_vocabulary(model, tokenizer) -> int:
    """Give the tokenizer the tool-call markers and the characters calls need; returns how many were new."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in TOOL_TOKENS if t not in vocab]
    if missing:
        # plain added tokens: the runtime reads them in decoded text (special tokens would be skipped)
        add_special_tokens(model, tokenizer, missing, special=False)
    return len(missing)


def segments_of(text: str) -> list[tuple[str, bool]]:
    """A generated tool-using answer split into the model's text and the runtime's responses."""
    out, position = [], 0
    for match in _RESPONSE.finditer(text):
        if match.start() > position:
            out.append((text[position:match.start()], True))
        out.append((match.group(0), False))
        position = match.end()
    if position < len(text):
        out.append((text[position:], True))
    return out


class ToolsRun:
    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.tc = ctx.cfg.tools
        self.seed = ctx.cfg.seed  # task streams and the facts world follow the run's seed
        self.source = ctx.input_model()
        self.scratch = ctx.scratch_dir
        self.domains = list(DOMAINS)

    # --- bookkeeping ------------------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        return {"cfg": self.tc.model_dump(mode="json"), "seed": self.seed, "source": str(self.source)}

    def _say(self, text: str) -> None:
        self.ctx.console.print(f"[tools] {text}")
        self.ctx.log.info(text)

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> StageResult:
        tc, ctx = self.tc, self.ctx
        start = time.perf_counter()
        entering = load_agent(self.source, device=ctx.device)
        if entering.packed:
            raise ForgeError("the tools stage needs the latent (unpacked) model, not a packed export")
        state = load_phase_state(self.scratch, self._fingerprint())
        resumed = bool(state["done"])
        if resumed:
            self._say(f"resuming after {state['done']}")
        memory_path = self.scratch / "memory.db"
        if "memory" not in state["done"]:
            self._build_memory(memory_path)
            state["done"].append("memory")
            save_phase_state(self.scratch, state)
        use = self._tool_use(memory_path)

        frontier, entering_val = self._frontier(entering)
        entering_test = self._entering_test(entering)
        if "sft" in state["done"]:
            agent = load_agent(self.scratch / "sft", device=ctx.device)
        else:
            agent = entering
            add_tool_vocabulary(agent.model, agent.tokenizer)
            agent.extensions["tools"] = use  # the focus measurements answer with the tools
            state["logs"]["sft"] = self._supervised(agent, use, frontier)
            save_agent(agent, self.scratch / "sft")
            state["done"].append("sft")
            save_phase_state(self.scratch, state)
        agent.extensions["tools"] = use
        # the entering agent competes too: a stage that taught nothing useful must not pass on a worse model
        candidates = {"entering": self.source} if tc.require_gain else {}
        candidates["sft"] = self.scratch / "sft"
        if tc.rl_steps > 0:
            if "rl" not in state["done"]:
                state["logs"]["rl"] = self._reinforce(agent, frontier)
                save_agent(agent, self.scratch / "rl")
                state["done"].append("rl")
                save_phase_state(self.scratch, state)
            candidates["rl"] = self.scratch / "rl"
        return self._finish(candidates, use, frontier, entering_val, entering_test, state, resumed,
                            time.perf_counter() - start)

    def _build_memory(self, path: Path) -> None:
        from ...memory import MemoryStore

        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
        statements = KnowledgeBase.build(self.seed).statements()
        self._say(f"loading the knowledge base ({len(statements)} passages) into the memory store")
        with MemoryStore(path) as store:
            store.write_many(statements, [("kb",)] * len(statements))

    def _tool_use(self, memory_path: Path) -> ToolUse:
        tc = self.tc
        registry = builtin_registry(["calculator", "memory_search"], memory_path=str(memory_path), memory_k=tc.memory_k)
        return ToolUse(registry, max_calls=tc.max_calls, memory_path=str(memory_path), memory_k=tc.memory_k)

    def _frontier(self, agent) -> tuple[dict[str, list[int]], dict]:
        """Per tool domain, the levels where the entering agent needs its tool (validation below `call_below`)."""
        tc = self.tc
        val = task_grid(self.domains, list(tc.levels), "val", tc.val_items, self.seed)
        right = fast_exact_match(agent.model, agent.tokenizer, val)
        by_level: dict = {}
        for ok, t in zip(right, val):
            by_level.setdefault(t.domain, {}).setdefault(t.level, []).append(ok)
        accuracy = {d: {lvl: percent(sum(v) / len(v)) for lvl, v in levels.items()} for d, levels in by_level.items()}
        frontier = {d: [lvl for lvl in tc.levels if accuracy[d][lvl] < tc.call_below] for d in TOOL_OF_DOMAIN}
        self._say("tool levels (entering validation below "
                  f"{tc.call_below:g}%): " + "; ".join(f"{d} {frontier[d]}" for d in frontier))
        return frontier, accuracy

    def _entering_test(self, agent) -> list[bool]:
        return fast_exact_match(agent.model, agent.tokenizer, self._test_tasks())

    def _test_tasks(self):
        return task_grid(self.domains, list(self.tc.levels), "test", self.tc.test_items, self.seed)

    # --- supervised traces ----------------------------------------------------------------------
    def _traces(self, agent, use: ToolUse, frontier) -> tuple[list[Trace], list[Trace], dict]:
        tc, ctx = self.tc, self.ctx
        run_tool = registry_runner(use.registry)
        kb = KnowledgeBase.build(self.seed)
        # enough distinct traces per level that a level's batches rarely repeat, without building thousands
        per_level = max(16, min(TRACES_PER_LEVEL, tc.sft_steps * tc.batch_size // max(1, len(tc.levels))))
        tool_traces, replay, counts = [], [], {}
        cells = [(d, lvl) for d in self.domains for lvl in tc.levels]
        for domain, level in progress(cells, desc="tools traces"):
            tool_level = level in frontier.get(domain, [])
            tasks = make_tasks(domain, level, "train", per_level if tool_level else tc.replay_per_level,
                               ctx.sub_seed("train", domain, level), world_seed=self.seed)
            if tool_level:
                if domain == "arithmetic":
                    made = [arithmetic_trace(t, run_tool) for t in tasks]
                else:
                    made = [facts_trace(t, kb, run_tool) for t in tasks]
                kept = [tr for tr in made if tr is not None and self._length(agent, tr) <= tc.max_trace_tokens]
                counts[f"{domain}/{level}"] = {"tasks": len(tasks), "traces": len(kept),
                                               "unreachable": sum(tr is None for tr in made),
                                               "too_long": sum(tr is not None for tr in made) - len(kept)}
                tool_traces += kept
            else:  # no tool: the agent's own verified answers, so it keeps answering by itself
                right = fast_exact_match(agent.model, agent.tokenizer, tasks)
                replay += [no_call_trace(t) for t, ok in zip(tasks, right) if ok]
        return tool_traces, replay, counts

    @staticmethod
    def _length(agent, trace: Trace) -> int:
        return len(agent.tokenizer(trace.task.prompt + "\n" + trace.text, add_special_tokens=False)["input_ids"]) + 2

    def _trainable(self, agent) -> list[torch.nn.Parameter]:
        frozen: set[str] = set()
        experts = agent.extensions.get("experts")
        if self.tc.freeze_expert_matrices and experts is not None:
            frozen = set(experts.names)
        params = []
        for name, p in agent.model.named_parameters():
            p.requires_grad_(name not in frozen)
            if name not in frozen:
                params.append(p)
        return params

    def _supervised(self, agent, use: ToolUse, frontier) -> dict:
        tc, ctx = self.tc, self.ctx
        tool_traces, replay, counts = self._traces(agent, use, frontier)
        if not tool_traces and tc.sft_steps:
            raise ForgeError("no tool traces to train on: every tool level is at or above tools.call_below")
        rng = random.Random(ctx.sub_seed("sft-batches"))
        n_replay = round(tc.batch_size * tc.no_call_share) if replay else 0
        n_tool = tc.batch_size - n_replay if tool_traces else 0
        # a step's tool traces come from one (domain, level): similar lengths, so little of a batch is padding
        buckets: dict[tuple[str, int], list[Trace]] = {}
        for trace in tool_traces:
            buckets.setdefault((trace.task.domain, trace.task.level), []).append(trace)
        keys = sorted(buckets)
        domains = sorted({d for d, _ in keys})
        weights = {k: 1.0 for k in keys}  # a level's share of its domain's steps (refocused as training goes)
        focus_log: list[dict] = []
        focus_tasks = [t for domain, level in keys  # the same validation items at every measurement
                       for t in make_tasks(domain, level, "val", tc.focus_items, self.seed, world_seed=self.seed)]

        def pick_bucket() -> list[Trace]:
            if not keys:
                return []
            if tc.sample_by_domain:  # a domain with few trainable levels gets as many steps as one with many
                domain = domains[rng.randrange(len(domains))]
                levels = [k for k in keys if k[0] == domain]
                return buckets[rng.choices(levels, weights=[weights[k] for k in levels])[0]]
            return buckets[rng.choices(keys, weights=[weights[k] for k in keys])[0]]

        def next_batch(step: int):
            if tc.focus_every and step and step % tc.focus_every == 0:
                focus_log.append(self._refocus(agent, focus_tasks, keys, weights, step))
            bucket = pick_bucket()
            return rng.sample(bucket, min(n_tool, len(bucket))) + rng.sample(replay, min(n_replay, len(replay)))

        def encode(traces):
            return encode_segments(agent.tokenizer, [t.task.prompt for t in traces], [t.segments for t in traces])

        self._say(f"supervised: {len(tool_traces)} tool traces, {len(replay)} no-call answers, {tc.sft_steps} steps")
        torch.manual_seed(ctx.sub_seed("sft"))
        log = train_supervised(agent.model, agent.tokenizer, next_batch, steps=tc.sft_steps, lr=tc.lr,
                               warmup_steps=tc.warmup_steps, params=self._trainable(agent), encode=encode,
                               desc="tools sft")
        return {"traces": counts, "tool_traces": len(tool_traces), "no_call_answers": len(replay), "focus": focus_log,
                "loss_first": round(log.losses[0], 4) if log.losses else None,
                "loss_last": round(log.tail_mean(20), 4) if log.losses else None, "seconds": round(log.seconds, 1)}

    def _refocus(self, agent, tasks, keys: list[tuple[str, int]], weights: dict, step: int) -> dict:
        """Measure every tool level with its tools on validation and reweight the levels by their error rate.

        Uniform sampling spends most steps on levels the agent already answers while the longest copies (e.g.
        two 7-digit operands into the call, an 8-digit result read back reversed) stay unlearnt; measuring and
        drawing the failing levels more is the adaptive-curriculum remedy. Greedy decoding: deterministic."""
        was_training = agent.model.training
        agent.model.eval()
        with torch.no_grad():
            report = evaluate_agent(agent, tasks, method="generate", think=False)
        agent.model.train(was_training)
        right: dict = {}
        for task, item in zip(tasks, report.items):
            right.setdefault((task.domain, task.level), []).append(float(item[3]))
        accuracy = {k: sum(right[k]) / len(right[k]) for k in keys}
        weights.update(focus_weights(accuracy, self.tc.focus_floor))
        self._say(f"focus at step {step}: validation with tools " + "; ".join(
            f"{d} " + "/".join(f"{percent(accuracy[k]):.0f}" for k in keys if k[0] == d)
            for d in sorted({d for d, _ in keys})))
        return {"step": step, "accuracy": {f"{d}/{lvl}": percent(accuracy[(d, lvl)]) for d, lvl in keys}}

    # --- policy gradient with the tools in the loop ----------------------------------------------
    def _reinforce(self, agent, frontier) -> dict:
        tc, ctx = self.tc, self.ctx
        reference = copy.deepcopy(agent.model)
        trainer = PolicyGradientTrainer(agent.model, agent.tokenizer, lr=tc.rl_lr, ref_model=reference,
                                        kl_coef=tc.kl_coef, warmup_steps=min(5, tc.rl_steps),
                                        params=self._trainable(agent))
        rng = random.Random(ctx.sub_seed("rl-prompts"))
        pool = [t for d in self.domains for lvl in tc.levels
                for t in make_tasks(d, lvl, "train", 8, ctx.sub_seed("rl", d, lvl), world_seed=self.seed)]
        history = []
        for step in progress(range(tc.rl_steps), desc="tools rl"):
            tasks = rng.sample(pool, min(tc.rl_prompts, len(pool)))
            prompts = [t.prompt for t in tasks for _ in range(tc.rl_samples)]
            groups = [i for i in range(len(tasks)) for _ in range(tc.rl_samples)]
            replies = answer(agent, prompts, max_new_tokens=TOOL_ROUND_TOKENS, temperature=tc.rl_temperature,
                             seed=ctx.sub_seed("rl-sample", step), think=False, max_hook_rounds=tc.max_calls)
            rewards = [1.0 if verify(tasks[g], final_answer(r.text)) else -1.0 for g, r in zip(groups, replies)]
            stats = trainer.step_segments(prompts, [segments_of(r.text) for r in replies], rewards, groups)
            history.append(round(stats.mean_reward, 3))
        agent.model.eval()
        del reference
        return {"mean_reward": history, "steps": tc.rl_steps}

    # --- measurement and the report -------------------------------------------------------------
    def _with_and_without(self, agent, tasks) -> tuple[list[float], list[float], list[bool]]:
        """Per task: correct with tools (answering as served, no thoughts), correct without, and called a tool."""
        with_tools = evaluate_agent(agent, tasks, method="generate", think=False)
        tools = agent.extensions.pop("tools")
        try:
            without = evaluate_agent(agent, tasks, method="fast")
        finally:
            agent.extensions["tools"] = tools
        return ([s for *_, s in with_tools.items], [s for *_, s in without.items],
                [called_tool(a) for a in with_tools.answers])

    def _finish(self, candidates, use, frontier, entering_val, entering_test, state, resumed, seconds) -> StageResult:
        tc, ctx = self.tc, self.ctx
        val = task_grid(self.domains, list(tc.levels), "val", tc.val_items, self.seed)
        selection = {}
        for name, path in candidates.items():
            candidate = load_agent(path, device=ctx.device)
            candidate.extensions["tools"] = use
            right = evaluate_agent(candidate, val, method="generate", think=False)
            selection[name] = round(right.accuracy, 2)
        trained = [n for n in selection if n != "entering"]
        chosen = max(trained, key=lambda n: (selection[n], n == "sft"))  # ties: the simpler supervised model
        if "entering" in selection and selection["entering"] >= selection[chosen]:
            chosen = "entering"  # no gain on validation: training with tools is not worth its risk
        self._say("validation accuracy with tools: " + ", ".join(f"{n} {a:.2f}" for n, a in selection.items())
                  + f"; keeping {chosen}")
        agent = load_agent(candidates[chosen], device=ctx.device)
        agent.extensions["tools"] = use
        test = self._test_tasks()
        with_tools, without, called = self._with_and_without(agent, test)
        table = self._table(test, with_tools, without, called, entering_test)
        out_dir = ctx.stage_dir / "model"
        save_agent(agent, out_dir)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self._print(table)
        metrics = {
            "tool_levels": frontier, "entering_val_accuracy": entering_val, "selection_val_accuracy": selection,
            "chosen": chosen, "test": table, "training": state["logs"], "resumed": resumed,
            "memory": {"passages": len(KnowledgeBase.build(self.seed).statements()), "k": tc.memory_k,
                       "file": "model/memory.db"},
            "seconds": round(seconds, 1),
            "summary": {
                "arithmetic_5_10_with_tools": self._mean(table, "arithmetic", range(5, 11), "with_tools"),
                "arithmetic_5_10_without_tools": self._mean(table, "arithmetic", range(5, 11), "without_tools"),
                "facts_with_memory": self._mean(table, "facts", tc.levels, "with_tools"),
                "facts_without_memory": self._mean(table, "facts", tc.levels, "without_tools"),
                "call_share": {d: table[d]["call_share"] for d in self.domains},
            },
        }
        return StageResult(models={"model": out_dir}, metrics=metrics)

    def _table(self, tasks, with_tools, without, called, entering) -> dict:
        table: dict = {}
        for d in self.domains:
            rows = [i for i, t in enumerate(tasks) if t.domain == d]
            per_level = {}
            for lvl in self.tc.levels:
                idx = [i for i in rows if tasks[i].level == lvl]
                per_level[str(lvl)] = {
                    "entering": percent(sum(entering[i] for i in idx) / len(idx)),
                    "without_tools": percent(sum(without[i] for i in idx) / len(idx)),
                    "with_tools": percent(sum(with_tools[i] for i in idx) / len(idx)),
                    "call_share": percent(sum(called[i] for i in idx) / len(idx)),
                }
            table[d] = {
                "levels": per_level,
                "entering": percent(sum(entering[i] for i in rows) / len(rows)),
                "without_tools": percent(sum(without[i] for i in rows) / len(rows)),
                "with_tools": percent(sum(with_tools[i] for i in rows) / len(rows)),
                "call_share": percent(sum(called[i] for i in rows) / len(rows)),
            }
        return table

    @staticmethod
    def _mean(table, domain, levels, key) -> float:
        values = [table[domain]["levels"][str(lvl)][key] for lvl in levels if str(lvl) in table[domain]["levels"]]
        return round(sum(values) / len(values), 2) if values else 0.0

    def _print(self, table) -> None:
        columns = ("domain", "level", "entering", "without tools", "with tools", "calls a tool")
        rows = []
        for d, entry in table.items():
            for lvl, v in entry["levels"].items():
                rows.append((d, lvl, cell(v["entering"]), cell(v["without_tools"]), cell(v["with_tools"]),
                             cell(v["call_share"])))
            rows.append((d, "all", cell(entry["entering"]), cell(entry["without_tools"]), cell(entry["with_tools"]),
                         cell(entry["call_share"])))
        self.ctx.console.print(rows_table("tools: test accuracy (%) and share of answers calling a tool", columns,
                                          rows, justify="right"))


def run(ctx: StageContext) -> StageResult:
    """Stage entry point (registered in `agent_forge.registry.STAGES`)."""
    return ToolsRun(ctx).run()
