"""The baking stage's run: score candidate prompts, bake the best one after another (each gated), report.

1. Every candidate (knowledge, strategies, identity parts) is scored on validation with its prompt in context
   against the same model without it; those that gain at least `min_gain` points are baked, best gain first
   (one rendering per target).
2. A bake (`_attempt`): trajectories sampled from the current model with the prompt, plus a share of ordinary
   task prompts answered by the current model without a prompt (so that other skills are kept); the teacher's
   log-probabilities once; a copy of the model trained to the per-token forward KL (`training.baking`), with
   half-baking snapshots measured (held-out KL and target score per fraction of the steps). The bake is kept
   only if its target gains on validation without the prompt, no domain drops more than `max_drop` points and
   no earlier kept bake's target does either; otherwise the current weights are left untouched.
3. Prompt pursuit: each kept identity part is baked again with the baked model plus its prompt as teacher,
   gated the same way.
4. Report on the test split: domains, knowledge, strategies, identity (held-out phrasings) before and after,
   re-prompting, drift over a long conversation, the strength-curve plot.

Resumable per bake: the current weights and the decisions so far live in `ctx.scratch_dir`. Every random
stream is a `ctx.sub_seed`. Exercise: `pytest tests/stages/baking`.
"""

from __future__ import annotations

import copy
import io
import random
import shutil
import time

import torch

from ...errors import ForgeError
from ...evaluation import evaluate_agent, fast_exact_match, percent
from ...evaluation.table import cell, rows_table
from ...inference import answer
from ...models import Agent, generate, load_agent, prompt_format, save_agent
from ...models.formats.experts import cached_decomposition
from ...models.formats.ternary import is_ternary
from ...stage_contract import StageContext, StageResult
from ...tasks import DOMAINS, Task, make_tasks, task_grid
from ...training.bake_weights import BakeWeights
from ...training.baking import bake, measure_kl, sample_examples, teacher_targets
from ...utils.atomic import atomic_write_bytes
from ...utils.resume import load_phase_state, save_phase_state
from . import identity as ident
from .candidates import Candidate, identity_candidates, knowledge_candidates, strategy_candidates
from .plots import plot_strength


HELD_OUT = 64  # trajectories of the held-out KL per bake


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else 0.0


class BakingRun:
    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.bc = ctx.cfg.baking
        self.seed = ctx.cfg.seed  # task streams and the facts world follow the run's seed
        self.source = ctx.input_model()
        self.scratch = ctx.scratch_dir
        self.domains = list(DOMAINS)

    def _fingerprint(self) -> dict:
        return {"cfg": self.bc.model_dump(mode="json"), "seed": self.seed, "source": str(self.source)}

    def _say(self, text: str) -> None:
        self.ctx.console.print(f"[baking] {text}")
        self.ctx.log.info(text)

    # --- data -----------------------------------------------------------------------------------
    def _tasks(self, split: str, domains, levels, n: int) -> list[Task]:
        if split == "train":
            return [t for d in domains for lvl in levels
                    for t in make_tasks(d, lvl, "train", n, self.ctx.sub_seed("train", d, lvl), world_seed=self.seed)]
        return task_grid(list(domains), list(levels), split, n, self.seed)

    def _setup(self, tok) -> None:
        bc = self.bc
        self.fmt = prompt_format(tok)
        self.val = self._tasks("val", self.domains, bc.levels, bc.val_items)
        self.test = self._tasks("test", self.domains, bc.levels, bc.test_items)
        per_level = max(8, bc.trajectories // max(1, len(bc.levels)))
        self.train = {d: self._tasks("train", [d], bc.levels, per_level) for d in self.domains}
        self.val_by = {d: [t for t in self.val if t.domain == d] for d in self.domains}
        k_levels = list(bc.knowledge_levels)
        self.facts_train = self._tasks("train", ["facts"], k_levels, max(8, bc.trajectories // max(1, len(k_levels))))
        self.facts_val = self._tasks("val", ["facts"], k_levels, bc.val_items)
        self.facts_test = self._tasks("test", ["facts"], k_levels, bc.test_items)
        fillers = {split: [t.prompt for t in self._tasks(split, ["strings", "logic"], [1], 6)]
                   for split in ("train", "val", "test")}
        self.parts = ident.identity_parts(bc.identity, fillers) if bc.identity.enabled else []
        ident.check_alphabet(self.parts, tok)
        all_train = [t for d in self.domains for t in self.train[d]]
        self.candidates: list[Candidate] = knowledge_candidates(bc, self.facts_train, self.facts_val, all_train,
                                                                self.val)
        if bc.strategies:
            self.candidates += strategy_candidates(bc, self.fmt, self.domains, self.train, self.val_by, self.seed)
        self.candidates += identity_candidates(self.parts, self.fmt)
        self.by_name = {c.name: c for c in self.candidates}

    # --- scores ---------------------------------------------------------------------------------
    def _task_accuracy(self, model, tok, tasks: list[Task], cand: Candidate | None = None) -> float:
        if not tasks:
            return 0.0
        shown = [Task(t.task_id, t.domain, t.level, cand.prompted(t.prompt), t.answer, t.rationale, t.meta)
                 for t in tasks] if cand is not None else tasks
        right = fast_exact_match(model, tok, shown)
        return percent(sum(right) / len(right))

    def _scores(self, model, tok, jobs: list[tuple[ident.Part, list[str]]], render: bool = True) -> list[float]:
        """Percent compliant greedy replies for each (part, prompts) job, generated in one batch (a tiny model's
        generation is dominated by per-step overhead, so one batch of all parts costs about as much as one)."""
        prompts = [p for _, ps in jobs for p in ps]
        if not prompts:
            return [0.0 for _ in jobs]
        longest = max(len(tok(part.answer)["input_ids"]) for part, _ in jobs)
        replies = generate(model, tok, prompts, max_new_tokens=longest + 8, render=render, progress=False)
        out, at = [], 0
        for part, ps in jobs:
            chunk = replies[at : at + len(ps)]
            at += len(ps)
            out.append(percent(sum(part.complies(r) for r in chunk) / max(1, len(chunk))))
        return out

    def _part_score(self, model, tok, part: ident.Part, split: str, cand: Candidate | None = None) -> float:
        questions = part.questions[split]
        return self._scores(model, tok, [(part, [cand.prompted(q) if cand else q for q in questions])])[0]

    def _target_score(self, model, tok, cand: Candidate, prompted: bool, split: str = "val") -> float:
        shown = cand if prompted else None
        if cand.part is not None:
            return self._part_score(model, tok, cand.part, split, shown)
        return self._task_accuracy(model, tok, cand.val_tasks, shown)

    def _validation(self, model, tok) -> dict[str, float]:
        """Unprompted validation score of every domain and every identity part (what a bake must not undo)."""
        right = fast_exact_match(model, tok, self.val)
        out = {d: percent(sum(r for r, t in zip(right, self.val) if t.domain == d) / len(self.val_by[d]))
               for d in self.domains}
        out["facts:knowledge"] = self._task_accuracy(model, tok, self.facts_val)
        jobs = [(part, part.questions["val"]) for part in self.parts]
        out.update({part.name: v for part, v in zip(self.parts, self._scores(model, tok, jobs))})
        return out

    @staticmethod
    def _key(cand: Candidate) -> str:
        return "facts:knowledge" if cand.kind == "knowledge" and cand.target == "facts" else cand.target

    def _score_of(self, scores: dict, cand: Candidate) -> float:
        if cand.target == "all":
            return _mean(scores[d] for d in self.domains)
        return scores[self._key(cand)]

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> StageResult:
        bc, ctx = self.bc, self.ctx
        start = time.perf_counter()
        agent = load_agent(self.source, device=ctx.device)
        if agent.packed:
            raise ForgeError("the baking stage needs the latent (unpacked) model, not a packed export")
        tok = agent.tokenizer
        self._setup(tok)
        entering = copy.deepcopy(agent.model).eval()
        experts = agent.extensions.get("experts")
        self.frozen = set(experts.names) if (experts is not None and bc.freeze_expert_matrices) else set()
        self.max_positions = getattr(agent.model.config, "max_position_embeddings", None)
        state = load_phase_state(self.scratch, self._fingerprint())
        resumed = bool(state["done"])
        model = agent.model.eval()
        if resumed:
            self._say(f"resuming after {len(state['done'])} phases")
            model.load_state_dict(torch.load(self.scratch / "current.pt", weights_only=True))
        if "score" not in state["done"]:
            state["logs"]["candidates"] = self._score_candidates(model, tok)
            state["logs"]["kept"] = []
            state["logs"]["bakes"] = []
            state["logs"]["val"] = self._validation(model, tok)
            self._checkpoint(model, state, "score")
        plan = self._plan(state["logs"]["candidates"])
        for name in plan:
            model = self._step(model, tok, state, name)
        agent.model = model
        return self._finish(agent, entering, state, resumed, time.perf_counter() - start)

    def _checkpoint(self, model, state: dict, phase: str) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, buffer)
        atomic_write_bytes(self.scratch / "current.pt", buffer.getvalue())
        state["done"].append(phase)
        save_phase_state(self.scratch, state)  # written last: names the phase as finished

    def _score_candidates(self, model, tok) -> list[dict]:
        rows = []
        unprompted = self._validation(model, tok)
        identity = [c for c in self.candidates if c.part is not None]
        with_prompt = dict(zip((c.name for c in identity), self._scores(
            model, tok, [(c.part, [c.prompted(q) for q in c.part.questions["val"]]) for c in identity])))
        for cand in self.candidates:
            plain = self._score_of(unprompted, cand)
            prompted = with_prompt[cand.name] if cand.part is not None else self._target_score(model, tok, cand, True)
            rows.append({"name": cand.name, "kind": cand.kind, "target": cand.target, "unprompted": plain,
                         "prompted": prompted, "gain": round(prompted - plain, 2)})
        self.ctx.console.print(rows_table(
            "baking: candidate prompts on validation (%)", ("candidate", "without", "with prompt", "gain"),
            [(r["name"], cell(r["unprompted"]), cell(r["prompted"]), cell(r["gain"])) for r in rows],
            justify="right"))
        return rows

    def _plan(self, rows: list[dict]) -> list[str]:
        """Candidates to bake: gain >= candidate_min_gain, best gain first, one rendering per target."""
        chosen, targets = [], set()
        for r in sorted(rows, key=lambda r: (-r["gain"], r["name"])):
            key = self._key(self.by_name[r["name"]])
            if r["gain"] < self.bc.candidate_min_gain or key in targets or len(chosen) >= self.bc.max_bakes:
                continue
            chosen.append(r["name"])
            targets.add(key)
        self._say(f"baking {len(chosen)} of {len(rows)} candidates: {chosen}")
        return chosen

    def _step(self, model, tok, state: dict, name: str):
        phase = f"bake:{name}"
        if phase in state["done"]:
            return model
        record, baked = self._attempt(model, tok, self.by_name[name], state)
        state["logs"]["bakes"].append(record)
        if record["kept"]:
            model = baked
            state["logs"]["val"] = record["val_after"]
            state["logs"]["kept"].append({"name": name, "target": self._key(self.by_name[name]),
                                          "round": record["round"], "score": record["target_after"]})
        self._checkpoint(model, state, phase)
        return model

    def _attempt(self, model, tok, cand: Candidate, state: dict):
        """Bake `cand` into a copy of `model` (with prompt pursuit for identity parts), then gate the result:
        (record, baked model) when kept, (record, None) when rejected; `model` itself is never changed."""
        bc = self.bc
        before = dict(state["logs"]["val"])
        rounds = 1 + (bc.pursuit_rounds if cand.kind == "identity" else 0)
        teacher, tried = model, []
        for rnd in range(rounds):  # round r > 0: prompt pursuit, the teacher is round r-1's baked model + u
            record, baked = self._bake_once(teacher, tok, cand, rnd, before)
            tried.append((record, baked))
            teacher = baked
        best = max(range(len(tried)), key=lambda i: (tried[i][0]["target_after"], -i))
        record, baked = tried[best]
        target_before = self._score_of(before, cand)
        after = record["val_after"]
        reasons = []
        if record["target_after"] < target_before + bc.min_gain:
            reasons.append(f"target {target_before:.1f} -> {record['target_after']:.1f} (needs +{bc.min_gain:g})")
        for d in self.domains:
            if after[d] < before[d] - bc.max_drop and d != cand.target:
                reasons.append(f"{d} {before[d]:.1f} -> {after[d]:.1f}")
        for kept in state["logs"]["kept"]:
            if after[kept["target"]] < kept["score"] - bc.max_drop:
                reasons.append(f"undoes {kept['name']} ({kept['score']:.1f} -> {after[kept['target']]:.1f})")
        keep = not reasons
        self._say(f"{cand.name}: KL {record['kl_before']:.4f} -> {record['kl_after']:.4f}; target "
                  f"{target_before:.1f} -> {record['target_after']:.1f} (round {record['round']}, re-prompted "
                  f"{record['reprompted']:.1f}); " + ("kept" if keep else "rejected: " + "; ".join(reasons)))
        summary = dict(record, kept=keep, reasons=reasons, val_before=before,
                       pursuit=[{k: r[k] for k in ("round", "kl_before", "kl_after", "target_after", "reprompted")}
                                for r, _ in tried])
        return summary, (baked if keep else None)

    def _preserve_prompts(self, rng: random.Random, n: int, cand: Candidate) -> list[str]:
        # the bake's own domain is left out: there the prompted teacher is the one to follow
        pool = [t.prompt for d in self.domains if d != cand.target for t in self.train[d]]
        return [pool[rng.randrange(len(pool))] for _ in range(n)] if pool else []

    def _bake_once(self, model, tok, cand: Candidate, rnd: int, before: dict):
        """One bake of `cand` into a copy of `model`, the teacher being `model` with the prompt: (record, baked)."""
        bc, ctx = self.bc, self.ctx
        rng = random.Random(ctx.sub_seed("bake", cand.name, rnd))
        teacher = copy.deepcopy(model).eval()
        xs = [cand.train[rng.randrange(len(cand.train))] for _ in range(bc.trajectories)]
        sampling = dict(temperature=bc.temperature, max_new_tokens=bc.max_new_tokens, max_positions=self.max_positions)
        examples = sample_examples(teacher, tok, [cand.prompted(x) for x in xs], xs, samples=bc.samples,
                                   seed=ctx.sub_seed("trajectories", cand.name, rnd), **sampling)
        n_keep = len(examples)
        if bc.preserve_share > 0:
            n_pres = round(bc.trajectories * bc.preserve_share / (1 - bc.preserve_share))
            plain = self._preserve_prompts(rng, n_pres, cand)
            examples += sample_examples(teacher, tok, plain, plain, samples=1,
                                        seed=ctx.sub_seed("preserve", cand.name, rnd),
                                        **(sampling | {"temperature": bc.preserve_temperature}))
        # the held-out KL: validation inputs, cycled so that a part with three phrasings is still measured on
        # HELD_OUT trajectories (sampled rows differ even when their prompts repeat)
        held_x = [cand.val[i % len(cand.val)] for i in range(max(HELD_OUT, len(cand.val)))][:max(HELD_OUT, 1)]
        held = sample_examples(teacher, tok, [cand.prompted(x) for x in held_x], held_x, samples=1,
                               seed=ctx.sub_seed("held-out", cand.name, rnd), **sampling)
        if not n_keep or not held:
            raise ForgeError(f"baking {cand.name}: no trajectory fits the model's context "
                             f"({self.max_positions} positions)")
        targets = teacher_targets(teacher, tok, examples, top_k=bc.top_k)
        held_targets = teacher_targets(teacher, tok, held)
        n_pres_batch = round(bc.batch_size * bc.preserve_share) if len(examples) > n_keep else 0

        def sampler(r: random.Random, size: int) -> list[int]:
            own = [r.randrange(n_keep) for _ in range(size - n_pres_batch)]
            return own + [n_keep + r.randrange(len(examples) - n_keep) for _ in range(n_pres_batch)]

        target_before = self._score_of(before, cand)
        student = copy.deepcopy(model)
        weights = BakeWeights.prepare(student, method=bc.method, pattern=bc.modules, frozen=self.frozen,
                                      rank=bc.lora_rank, alpha=bc.lora_alpha)
        kl_before = measure_kl(weights.model, tok, held, held_targets)
        topk_note = None
        if bc.top_k:
            approx = teacher_targets(teacher, tok, held, top_k=bc.top_k)
            topk_note = {"k": bc.top_k, "kl_before_topk": round(measure_kl(weights.model, tok, held, approx), 5)}
        points = sorted({round(f * bc.steps) for f in bc.strength_points})
        self._say(f"baking {cand.name} (round {rnd}): {n_keep} prompted + {len(examples) - n_keep} preserving "
                  f"trajectories, {bc.steps} steps, {weights.method}")
        torch.manual_seed(ctx.sub_seed("bake-init", cand.name, rnd))
        log = bake(weights.model, tok, examples, targets, params=list(weights.named.values()), steps=bc.steps,
                   batch_size=bc.batch_size, lr=bc.lr, warmup_steps=bc.warmup_steps,
                   seed=ctx.sub_seed("batches", cand.name, rnd), snapshot_steps=points, named=weights.named,
                   desc=f"bake {cand.name}", sampler=sampler)
        curve = []
        for step in points:  # half-baking: the bake stopped at this step
            weights.load(log.snapshots[step])
            curve.append({"fraction": round(step / bc.steps, 4), "step": step,
                          "kl": round(measure_kl(weights.model, tok, held, held_targets), 5),
                          "target": self._target_score(weights.model, tok, cand, prompted=False)})
        weights.load(log.snapshots[bc.steps])
        if topk_note is not None:
            topk_note["kl_after_topk"] = round(measure_kl(weights.model, tok, held, approx), 5)
        baked = weights.fold().eval()
        for p in baked.parameters():
            p.requires_grad_(False)
        kl_after = measure_kl(baked, tok, held, held_targets)
        after = self._validation(baked, tok)
        target_after = self._score_of(after, cand)
        reprompted = self._target_score(baked, tok, cand, prompted=True)
        record = {
            "name": cand.name, "kind": cand.kind, "target": cand.target, "round": rnd, "method": weights.method,
            "trajectories": n_keep, "preserving": len(examples) - n_keep, "held_out": len(held),
            "kl_before": round(kl_before, 5), "kl_after": round(kl_after, 5),
            "kl_ratio": round(kl_before / max(kl_after, 1e-9), 2), "top_k": topk_note,
            "target_before": target_before, "target_after": target_after, "reprompted": reprompted,
            "strength_curve": curve, "monotone_kl": all(a["kl"] >= b["kl"] - 1e-6 for a, b in zip(curve, curve[1:])),
            "val_after": after,
            "loss_first": round(log.losses[0], 5), "loss_last": round(sum(log.losses[-10:]) / len(log.losses[-10:]), 5),
            "seconds": round(log.seconds, 1),
        }
        return record, baked

    # --- the report -----------------------------------------------------------------------------
    def _identity_report(self, model, tok, prompted_by: dict[str, Candidate] | None = None) -> dict[str, float]:
        chosen = prompted_by or {}
        jobs = [(part, [chosen[part.name].prompted(q) if part.name in chosen else q for q in part.questions["test"]])
                for part in self.parts]
        return {part.name: v for part, v in zip(self.parts, self._scores(model, tok, jobs))}

    def _split_identity(self, scores: dict[str, float]) -> dict[str, float]:
        persona = [v for k, v in scores.items() if k.startswith("persona:")]
        rules = [v for k, v in scores.items() if k.startswith("rule:")]
        return {"questionnaire": _mean(persona), "compliance": _mean(rules)}

    def _drift(self, model, tok) -> dict[str, dict[str, float]]:
        """Identity on test phrasings after N-1 earlier turns of ordinary tasks in the same conversation."""
        budget = self.max_positions or 256
        history_tasks = self._tasks("test", self.domains, [1, 2], 6)
        random.Random(self.ctx.sub_seed("drift")).shuffle(history_tasks)
        out = {}
        budget -= max((len(tok(p.answer)["input_ids"]) for p in self.parts), default=0) + 8  # room for the reply
        for turns in self.bc.identity.drift_turns:
            history = [(t.prompt, t.answer) for t in history_tasks[: turns - 1]]
            jobs = [(part, [ident.conversation(self.fmt, history, q, budget, tok) for q in part.questions["test"]])
                    for part in self.parts]
            scores = dict(zip((p.name for p in self.parts), self._scores(model, tok, jobs, render=False)))
            out[str(turns)] = self._split_identity(scores)
        return out

    def _chat_identity(self, agent) -> dict[str, float]:
        """The identity as `agent-forge chat` answers (thinking when the agent has a head, experts dispatched)."""
        scores = {}
        for part in self.parts:
            replies = answer(agent, part.questions["test"], max_new_tokens=len(part.answer) + 8)
            scores[part.name] = percent(sum(part.complies(r.text) for r in replies) / max(1, len(replies)))
        return self._split_identity(scores)

    def _domains(self, model, tok) -> dict[str, float]:
        right = fast_exact_match(model, tok, self.test)
        return {d: percent(sum(r for r, t in zip(right, self.test) if t.domain == d)
                           / sum(t.domain == d for t in self.test)) for d in self.domains}

    def _finish(self, agent, entering, state, resumed, seconds) -> StageResult:
        ctx, tok = self.ctx, agent.tokenizer
        model = agent.model
        bakes, kept = state["logs"]["bakes"], state["logs"]["kept"]
        kept_names = {k["name"] for k in kept}
        knowledge = self.by_name["knowledge:facts passages"]
        know = {
            "entering_unprompted": self._task_accuracy(entering, tok, self.facts_test),
            "entering_prompted": self._task_accuracy(entering, tok, self.facts_test, knowledge),
            "leaving_unprompted": self._task_accuracy(model, tok, self.facts_test),
            "leaving_reprompted": self._task_accuracy(model, tok, self.facts_test, knowledge),
            "baked": knowledge.name in kept_names,
        }
        know["ratio_to_prompted"] = round(know["leaving_unprompted"] / know["entering_prompted"], 3) \
            if know["entering_prompted"] else None
        strategies = {}
        for name in sorted(n for n in kept_names if n.startswith("strategy:")):
            cand, rec = self.by_name[name], [b for b in bakes if b["name"] == name and b["kept"]][-1]
            tasks = [t for t in self.test if t.domain == cand.target]
            strategies[name] = {
                "entering_prompted": self._task_accuracy(entering, tok, tasks, cand),
                "entering_unprompted": self._task_accuracy(entering, tok, tasks),
                "leaving_unprompted": self._task_accuracy(model, tok, tasks),
                "leaving_reprompted": self._task_accuracy(model, tok, tasks, cand),
                "kl_before": rec["kl_before"], "kl_after": rec["kl_after"], "kl_ratio": rec["kl_ratio"],
            }
        chosen_prompt = {}
        for row in sorted(state["logs"]["candidates"], key=lambda r: -r["prompted"]):
            if row["kind"] == "identity":
                chosen_prompt.setdefault(row["target"], self.by_name[row["name"]])
        identity = {}
        if self.parts:
            before = self._identity_report(entering, tok)
            prompted = self._identity_report(entering, tok, chosen_prompt)
            after = self._identity_report(model, tok)
            identity = {"parts": {"entering": before, "entering_prompted": prompted, "leaving": after},
                        "entering": self._split_identity(before), "entering_prompted": self._split_identity(prompted),
                        "leaving": self._split_identity(after), "drift": self._drift(model, tok)}
        domains_before, domains_after = self._domains(entering, tok), self._domains(model, tok)
        dispatched = {}
        experts = agent.extensions.get("experts")
        if experts is not None:
            view = Agent(entering, tok, agent.source, False, agent.extensions)
            dispatched["entering"] = evaluate_agent(view, self.test).by_domain
            if not self.frozen and kept:
                # the bakes moved the matrices the experts scale: their SVD is recomputed from the baked weights
                experts.decomposition = cached_decomposition(model, experts.names, None)
            dispatched["leaving"] = evaluate_agent(agent, self.test).by_domain
        if self.parts:
            identity["chat"] = self._chat_identity(agent)
        out_dir = ctx.stage_dir / "model"
        save_agent(agent, out_dir)
        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        plot_strength(bakes, ctx.stage_dir / "strength.png")
        shutil.rmtree(self.scratch, ignore_errors=True)
        changes = {d: round(domains_after[d] - domains_before[d], 2) for d in self.domains}
        self._print(domains_before, domains_after, know, identity)
        metrics = {
            "candidates": state["logs"]["candidates"], "bakes": bakes, "kept": kept,
            "knowledge": know, "strategies": strategies, "identity": identity,
            "test_accuracy": {"entering": domains_before, "leaving": domains_after, "change": changes},
            "dispatched_test_accuracy": dispatched, "ternary": is_ternary(model), "plot": "strength.png",
            "resumed": resumed, "seconds": round(seconds, 1),
            "summary": {
                "kept_bakes": len(kept), "tried_bakes": len(bakes),
                "facts_unprompted": know["leaving_unprompted"], "facts_prompted": know["entering_prompted"],
                "questionnaire": identity.get("leaving", {}).get("questionnaire"),
                "compliance": identity.get("leaving", {}).get("compliance"),
                "worst_domain_change": min(changes.values()),
            },
        }
        return StageResult(models={"model": out_dir}, metrics=metrics)

    def _print(self, before, after, know, identity) -> None:
        rows = [(d, cell(before[d]), cell(after[d])) for d in self.domains]
        rows.append(("facts (knowledge levels), prompted", cell(know["entering_prompted"]),
                     cell(know["leaving_reprompted"])))
        for key in ("questionnaire", "compliance"):
            if identity:
                rows.append((f"identity {key}", cell(identity["entering"][key]), cell(identity["leaving"][key])))
        self.ctx.console.print(rows_table("baking: test scores without a prompt (%)", ("", "entering", "leaving"),
                                          rows, justify="right"))


def run(ctx: StageContext) -> StageResult:
    """Stage entry point (registered in `agent_forge.registry.STAGES`)."""
    return BakingRun(ctx).run()
