"""The curriculum stage's run: assess, climb the levels with cycles, sleep, dream and self-model, report.

Resumable between levels: after each finished level the model, optimiser state, replay buffer and the run's
state are written atomically under `<run>/.resume/<stage dir name>/` (the pipeline deletes an unfinished
stage's own directory before rerunning it, so the checkpoint lives beside it); a new run of the stage that finds them continues
with the next level (same seed streams), so a killed run loses at most the level in progress.

Exercise: `agent-forge run --until curriculum`, or `pytest tests/stages/curriculum/test_stage.py`.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...errors import ForgeError
from ...evaluation import evaluate, fast_exact_match, percent
from ...evaluation.table import cell, rows_table
from ...models import Agent, load_agent, save_agent
from ...tasks import DOMAINS, make_tasks, task_grid
from ...training.grokfast import GrokfastEMA
from ...training.policy_gradient import PolicyGradientTrainer
from ...training.replay import ReplayBuffer
from ...utils import digest
from ...utils.atomic import atomic_write_bytes, atomic_write_json
from ...stage_contract import StageContext, StageResult
from .assessment import assess, fresh_level_accuracy, level_accuracy
from .controller import PerDomainDifficulty
from .cycle import CycleContext, run_cycle
from .dream import dream
from .episodes import TaskMixer, sample_train_task
from .plots import plot_calibration, plot_cycles, plot_levels
from .rollout import Thinker
from .self_model import measure_calibration, self_model_round
from .sleep import sleep, snapshot
from .ternary import ensure_ternary, ternary_report

STATE_FILE = "state.json"


def _check(cc, ctx: StageContext) -> Path:
    unknown = [d for d in cc.domains if d not in DOMAINS]
    if unknown:
        raise ForgeError(f"curriculum.domains: unknown domain(s) {unknown}; known: {sorted(DOMAINS)}")
    if not cc.domains:
        raise ForgeError("curriculum.domains must name at least one domain")
    return ctx.input_model()


def _load(source: Path, device: str | None) -> Agent:
    """The agent with every extension restored: a ternary model trains its latent weights through the STE."""
    return load_agent(source, device=device)


def _test_tasks(domains, levels: dict[str, list[int]], n: int, seed: int):
    return task_grid(domains, levels, "test", n, seed)


def _calibration_tasks(domains, frontier: dict[str, int], n_total: int, seed: int):
    """Validation tasks around each frontier (mastered and not yet mastered levels) for ECE."""
    per = max(2, n_total // (4 * len(domains)))
    around = {d: range(max(1, frontier[d] - 1), min(10, frontier[d] + 2) + 1) for d in domains}
    return task_grid(domains, around, "val", per, seed + 17)


def _summaries(levels_eval: dict[str, list[int]], frontier: dict[str, int], before: dict, after: dict) -> dict:
    """Mean test accuracy at mastered levels and at levels above the baseline, before and after, per domain."""
    out = {}
    for d, levels in levels_eval.items():
        mastered = [lvl for lvl in levels if lvl <= frontier[d]]
        above = [lvl for lvl in levels if lvl > frontier[d]]

        def mean(table, lv):
            vals = [table[d][str(x)] for x in lv if str(x) in table.get(d, {})]
            return round(sum(vals) / len(vals), 2) if vals else None

        out[d] = {
            "mastered_levels": mastered, "above_levels": above,
            "mastered_before": mean(before, mastered), "mastered_after": mean(after, mastered),
            "above_before": mean(before, above), "above_after": mean(after, above),
        }
    return out


def _headline(by_domain: dict, improved: list[str], ece_before: float, ece_after: float) -> dict:
    """The few numbers `agent-forge status` shows: domains that climbed, mean gains in points, ECE."""
    def mean_gain(before_key, after_key):
        gains = [s[after_key] - s[before_key] for s in by_domain.values() if s[before_key] is not None]
        return round(sum(gains) / len(gains), 2) if gains else None

    return {
        "domains_improved": len(improved),
        "above_gain": mean_gain("above_before", "above_after"),
        "mastered_change": mean_gain("mastered_before", "mastered_after"),
        "ece": f"{ece_before:.3f}->{ece_after:.3f}",
    }


class CurriculumRun:
    """One run of the stage; `run()` does everything and returns the StageResult."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.cc = cfg.curriculum
        self.source = _check(self.cc, ctx)
        self.stage_dir = ctx.stage_dir
        # outside the stage directory: the pipeline deletes an unfinished stage's directory before rerunning it
        self.resume_dir = ctx.scratch_dir
        self.console = ctx.console
        self.device = ctx.device
        # task streams and the facts world follow the run's seed; random draws of the stage use ctx.sub_seed
        self.seed = cfg.seed

    # --- persistence between levels ---------------------------------------------------------------
    def _save_checkpoint(self, model, tok, trainer, replay: ReplayBuffer, state: dict) -> None:
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        save_agent(self.agent, self.resume_dir / "model")
        buffer = io.BytesIO()
        torch.save(trainer.optimizer.state_dict(), buffer)
        atomic_write_bytes(self.resume_dir / "optimizer.pt", buffer.getvalue())
        atomic_write_json(self.resume_dir / "replay.json", replay.state_dict())
        # the state is written last: it names a level as finished only once everything else is on disk
        atomic_write_json(self.resume_dir / STATE_FILE, state)

    def _load_state(self) -> dict | None:
        path = self.resume_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if state.get("config_digest") != self._digest() or not (self.resume_dir / "model").is_dir():
            return None
        return state

    def _digest(self) -> str:
        return digest({"cfg": self.cc.model_dump(mode="json"), "seed": self.seed, "source": str(self.source)})

    # --- the run ----------------------------------------------------------------------------------
    def run(self) -> StageResult:
        cc = self.cc
        torch.manual_seed(self.ctx.sub_seed("train"))
        state = self._load_state()
        resumed = state is not None
        self.agent = _load(self.source, self.device)
        model, tok, ternary = self.agent.model, self.agent.tokenizer, self.agent.ternary
        ref_model = copy.deepcopy(model)  # the model that entered the stage: KL anchor and baseline
        domains = list(cc.domains)
        if state is None:
            state = self._fresh_state(model, tok, domains)
        else:
            self.agent = _load(self.resume_dir / "model", self.device)
            model, tok = self.agent.model, self.agent.tokenizer
            self.console.print(f"[curriculum] resuming after level {state['round']}")
        replay = (ReplayBuffer.from_state(json.loads((self.resume_dir / "replay.json").read_text()))
                  if resumed else self._seed_replay(model, tok, state))
        grokfast = GrokfastEMA(cc.grokfast.alpha, cc.grokfast.lamb) if cc.grokfast.enabled else None
        trainer = PolicyGradientTrainer(
            model, tok, lr=cc.cycle.lr, ref_model=ref_model, kl_coef=cc.cycle.kl_coef,
            normalize_std=cc.cycle.normalize_std, demo_coef=cc.cycle.demo_coef, grad_filter=grokfast,
            warmup_steps=cc.cycle.warmup_steps,
        )
        trainer.steps_done = int(state.get("optimizer_steps", 0))
        if resumed and (self.resume_dir / "optimizer.pt").is_file():
            trainer.optimizer.load_state_dict(torch.load(self.resume_dir / "optimizer.pt", weights_only=True))
        controller = PerDomainDifficulty.from_config(cc.controller)
        mixer = TaskMixer(cc.mix, self.seed, cc.cycle.prefix_probability, cc.cycle.self_awareness_prefix)
        thinker = Thinker.of(self.agent, cc.cycle.thought_tokens) if cc.cycle.use_thoughts else None
        ctx = CycleContext(model, tok, trainer, mixer, replay, controller, cc, self.ctx.sub_seed("cycles"), thinker,
                           dict(state.get("recent_accuracy", {})))
        slow = snapshot(model) if cc.sleep.enabled else None
        start = time.perf_counter() - state["elapsed"]

        while state["round"] < cc.levels:
            targets = {d: state["mastered"][d] + 1 for d in domains if state["mastered"][d] < 10}
            if not targets or self._budget_spent(state, start):
                break
            level = state["round"] + 1
            controller.reset(cc.controller.initial)
            slow_ref = [slow]
            level_log = self._train_level(ctx, state, level, targets, start, slow_ref)
            slow = slow_ref[0]
            state["levels"].append(level_log)
            state["round"] = level
            state["recent_accuracy"] = ctx.recent_accuracy
            state["elapsed"] = time.perf_counter() - start
            state["optimizer_steps"] = trainer.steps_done
            self._save_checkpoint(model, tok, trainer, replay, state)
            self.console.print(
                f"[curriculum] level {level}: targets {targets} mastered {state['mastered']} "
                f"({level_log['cycles']} cycles, {state['elapsed']:.0f}s)"
            )
        return self._finish(model, tok, state, ternary, resumed, time.perf_counter() - start)

    def _budget_spent(self, state: dict, start: float) -> bool:
        """Whether the stage's cycle budget (or its optional wall-clock cap) is used up: no new cycle starts."""
        cc = self.cc
        if cc.max_cycles is not None and state["cycles"] >= cc.max_cycles:
            return True
        return cc.time_budget_s is not None and time.perf_counter() - start > cc.time_budget_s

    def _fresh_state(self, model, tok, domains) -> dict:
        cc = self.cc
        a = cc.assessment
        profile = assess(model, tok, domains, items_per_level=a.items_per_level, threshold=a.threshold,
                         patience=a.patience, seed=self.seed)
        frontier = profile.frontier
        eval_levels = {d: list(range(1, min(10, frontier[d] + cc.eval_levels_above) + 1)) for d in domains}
        before = evaluate(model, tok, _test_tasks(domains, eval_levels, cc.test_items, self.seed)).to_dict()
        calib = measure_calibration(model, tok, _calibration_tasks(domains, frontier, cc.self_model.calibration_items, self.seed),
                                    cc.self_model.ece_bins)
        self.console.print(f"[curriculum] baseline frontier {frontier}; ECE {calib['ece']:.3f}")
        return {
            "config_digest": self._digest(), "round": 0, "elapsed": 0.0, "cycles": 0,
            "profile": profile.to_dict(), "frontier": dict(frontier), "mastered": dict(frontier),
            "eval_levels": eval_levels, "test_before": before["by_domain_level"], "calibration_before": calib,
            "history": [], "levels": [], "recent_accuracy": {},
        }

    def _seed_replay(self, model, tok, state) -> ReplayBuffer:
        """Verified successes at the levels the model entered with: what sleep rehearses to keep them."""
        replay = ReplayBuffer(capacity=self.cc.replay_capacity)
        for d, top in state["frontier"].items():
            for level in range(1, top + 1):
                tasks = make_tasks(d, level, "train", self.cc.replay_seed_items, self.seed + 101)
                right = fast_exact_match(model, tok, tasks)
                replay.add(f"{d}:{level}", [(t.prompt, t.answer) for t, ok in zip(tasks, right) if ok])
        return replay

    def _train_level(self, ctx: CycleContext, state, level: int, targets: dict, start: float, slow_ref: list) -> dict:
        """One curriculum level: cycles until every domain has mastered its target or the level's budget is spent.

        A domain that reaches the mastery threshold at a check advances at once (its next task level becomes its
        target for the rest of this level), so a domain that learns fast does not wait for the slow ones.
        """
        cc = self.cc
        started_with = dict(targets)
        targets = dict(targets)
        # validation accuracy at each domain's current target: where the level's prompts are worth most
        ctx.target_accuracy.clear()
        cycles = 0
        bar = tqdm(range(cc.max_cycles_per_level), desc=f"curriculum level {level}", leave=False, dynamic_ncols=True)
        for c in bar:
            index = state["cycles"]
            metrics = run_cycle(ctx, index, level, targets)
            state["cycles"] += 1
            cycles += 1
            k = c + 1
            if cc.sleep.enabled and k % cc.sleep.every == 0:
                metrics["sleep"] = self._sleep(ctx, slow_ref, seed=self.ctx.sub_seed("sleep", index))
            if cc.dream.enabled and k % cc.dream.every == 0:
                metrics["dream"] = dream(
                    ctx.model, ctx.tokenizer, targets, ctx.replay, prompts=cc.dream.prompts, samples=cc.dream.samples,
                    temperature=cc.dream.temperature, max_new_tokens=cc.cycle.max_new_tokens, seed=self.ctx.sub_seed("dream", index),
                    world_seed=self.seed,
                )
            if cc.self_model.enabled and k % cc.self_model.every == 0:
                metrics["self_model"] = self._self_model(ctx, targets, index)
            if k >= cc.min_cycles_per_level and k % cc.check_every == 0:
                acc = self._validate(ctx, targets)
                metrics["val_accuracy"] = {d: percent(a) for d, a in acc.items()}
                ctx.target_accuracy.update(acc)
                self._advance_mastered(ctx, state, targets, acc, metrics)
            state["history"].append(metrics)
            bar.set_postfix(success=f"{metrics['success']:.2f}", difficulty=f"{metrics['difficulty']:.2f}")
            if not targets or self._budget_spent(state, start):
                break
        bar.close()
        final = self._validate(ctx, targets)
        self._advance_mastered(ctx, state, targets, final, {})
        if cc.sleep.enabled:
            self._sleep(ctx, slow_ref, seed=self.ctx.sub_seed("sleep after level", level))
        if cc.self_model.enabled:
            self._self_model(ctx, targets or started_with, 10_000 + level)
        calib = measure_calibration(
            ctx.model, ctx.tokenizer,
            _calibration_tasks(list(cc.domains), state["frontier"], cc.self_model.calibration_items, self.seed),
            cc.self_model.ece_bins)
        return {"level": level, "targets": started_with, "cycles": cycles,
                "val_accuracy": {d: percent(a) for d, a in final.items()},
                "ece": round(calib["ece"], 4),
                "mastered": {d: state["mastered"][d] for d in started_with}}

    def _advance_mastered(self, ctx: CycleContext, state: dict, targets: dict, acc: dict, metrics: dict) -> None:
        """Advance every domain whose check reached the mastery threshold and, when `confirm_mastery` is on,
        held it on fresh validation items (recorded in percent under `metrics["confirm_accuracy"]`)."""
        cc = self.cc
        for d, a in acc.items():
            if a < cc.mastery_threshold:
                continue
            if cc.confirm_mastery:
                second = round(fresh_level_accuracy(ctx.model, ctx.tokenizer, d, targets[d], cc.val_items, self.seed), 4)
                metrics.setdefault("confirm_accuracy", {})[d] = percent(second)
                if second < cc.mastery_threshold:
                    continue
            self._advance(ctx, state, targets, d)

    @staticmethod
    def _advance(ctx: CycleContext, state: dict, targets: dict, domain: str) -> None:
        """Record `domain`'s target as mastered and move it to the next task level (or retire it after 10)."""
        state["mastered"][domain] = targets[domain]
        # the success rates and difficulty were measured on the level just mastered, not the one it starts next
        ctx.recent_accuracy.pop(domain, None)
        ctx.target_accuracy.pop(domain, None)
        ctx.controller.forget(domain)
        if targets[domain] < 10:
            targets[domain] += 1
        else:
            del targets[domain]

    def _sleep(self, ctx: CycleContext, slow_ref: list, seed: int) -> dict:
        """One sleep with the stage's settings; `slow_ref[0]` (the slow weights) is replaced by the new ones."""
        sc = self.cc.sleep
        slow_ref[0], info = sleep(ctx.model, ctx.replay, slow_ref[0], train_step=self._train_step(ctx, sc.lr),
                                  steps=sc.steps, batch_size=sc.batch_size, average=sc.average, seed=seed)
        return info

    @staticmethod
    def _train_step(ctx: CycleContext, lr: float):
        """One supervised step through the stage's optimiser (its Adam state is shared with the RL steps)."""
        return lambda pairs: ctx.trainer.step([], [], [], [], demonstrations=list(pairs), lr=lr).demo_loss

    def _validate(self, ctx: CycleContext, targets: dict) -> dict[str, float]:
        return {d: round(level_accuracy(ctx.model, ctx.tokenizer, d, lvl, "val", self.cc.val_items, self.seed), 4)
                for d, lvl in targets.items()}

    def _self_model(self, ctx: CycleContext, targets: dict, index: int) -> dict:
        import random

        sm = self.cc.self_model
        rng = random.Random(self.ctx.sub_seed("self-model tasks", index))
        tasks = []
        for _ in range(sm.prompts):
            d = rng.choice(sorted(targets))
            lvl = max(1, targets[d] - rng.randint(0, 1))
            tasks.append(sample_train_task(d, lvl, rng, self.seed))
        info = self_model_round(
            ctx.model, ctx.tokenizer, tasks, temperatures=sm.temperatures, steps=sm.steps,
            seed=self.ctx.sub_seed("self-model", index), max_new_tokens=self.cc.cycle.max_new_tokens,
            train_step=self._train_step(ctx, sm.lr),
        )
        info.pop("verified_pairs")
        return info

    def _finish(self, model, tok, state, ternary: bool, resumed: bool, seconds: float) -> StageResult:
        cc = self.cc
        domains = list(cc.domains)
        eval_levels = state["eval_levels"]
        after = evaluate(model, tok, _test_tasks(domains, eval_levels, cc.test_items, self.seed)).to_dict()["by_domain_level"]
        calib_after = measure_calibration(
            model, tok, _calibration_tasks(domains, state["frontier"], cc.self_model.calibration_items, self.seed),
            cc.self_model.ece_bins)
        calib_before = state["calibration_before"]
        summary = _summaries(eval_levels, state["frontier"], state["test_before"], after)
        improved = [d for d in domains if state["mastered"][d] > state["frontier"][d]]
        out_dir = self.stage_dir / "model"
        if ternary:
            ensure_ternary(model)
        save_agent(self.agent, out_dir)
        if cc.plots:
            plots = self.stage_dir / "plots"
            plots.mkdir(parents=True, exist_ok=True)
            if state["history"]:
                plot_cycles(state["history"], plots / "cycles.png")
            plot_levels(state["test_before"], after, plots / "levels.png")
            plot_calibration(calib_before, calib_after, plots / "calibration.png", cc.self_model.ece_bins)
        self._print_summary(state, summary, calib_before["ece"], calib_after["ece"])
        # the stage is complete: its checkpoints between levels are no longer needed
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        metrics = {
            "frontier": state["frontier"], "mastered": state["mastered"], "domains_improved": improved,
            "levels_trained": state["round"], "cycles": state["cycles"], "seconds": round(seconds, 1),
            "resumed": resumed, "ternary": ternary_report(model, ternary),
            "test_before": state["test_before"], "test_after": after, "by_domain": summary,
            "summary": _headline(summary, improved, round(calib_before["ece"], 4), round(calib_after["ece"], 4)),
            "ece_before": round(calib_before["ece"], 4), "ece_after": round(calib_after["ece"], 4),
            "profile": state["profile"], "levels": state["levels"], "history": state["history"],
        }
        return StageResult(models={"model": out_dir}, metrics=metrics)

    def _print_summary(self, state, summary, ece_before, ece_after) -> None:
        keys = ("mastered_before", "mastered_after", "above_before", "above_after")
        rows = [(d, str(state["frontier"][d]), str(state["mastered"][d]), *[cell(s[k]) for k in keys])
                for d, s in summary.items()]
        self.console.print(rows_table(
            "curriculum: test accuracy (%)",
            ("domain", "frontier", "mastered", "mastered lv before", "after", "above before", "after"), rows,
            justify="right"))
        self.console.print(f"[curriculum] ECE {ece_before:.3f} -> {ece_after:.3f}")


def run(ctx: StageContext) -> StageResult:
    """Stage entry point (registered in `agent_forge.registry.STAGES`)."""
    return CurriculumRun(ctx).run()
