"""The experts stage's run: SVD once, one expert per domain, the router, dispatch, the report.

Resumable per expert: the SVD cache and each finished expert are written under `ctx.scratch_dir` (with a
state file naming the finished domains and a digest of the config and input); a rerun continues with the
next domain, so a killed run loses at most the expert in progress. Every random stream is a `ctx.sub_seed`.

How an expert acts on the ternary latent model (`experts.application`): option (a) "weights" writes W' into
the latent weights, which BitLinear re-quantizes (a small z moves few ternary codes); option (b) "correction"
keeps the ternary weights and adds W' - W beside each layer in full precision, the form a packed bundle serves.
With "auto" (the default) every domain expert is trained both ways, the application with the higher mean
best-validation accuracy is kept for everything after (router, classification vector, reflection, dispatch), and
the other one is measured on the same test items (`application` in the metrics).

With `experts.cem_family` set, the report adds Transformer²'s few-shot mode, measured (`fewshot`): CEM mixture
weights of the trained experts from a few train items of a held-out family, and that family's test accuracy
under the base weights and under the mixture. The agent's experts record `packed_rank`, the rank of the
correction a packed save keeps (option (b)).

With `experts.reflection` on, self-reflection (`reflection.py`, STaR rationalization) runs after the domain
experts: the agent rewrites the worked steps of train tasks it failed, shown the verdict and the answer as a
hint; what holds without the hint, with the first-pass successes, trains one more expert, `reasoning`
(selectable by name, not dispatched automatically). `reflection` in the metrics counts failures and kept
rewrites per domain and the worked-form test accuracy of the entering weights and of the reasoning expert.

Two dispatch rules are chosen on validation and measured on test: the router threshold (below the top class
probability `threshold` the base weights answer) and the confidence policy (`experts.confidence_policy`): the
agent's self-confidence in its base-weights answer (`inference.confidence`) at or above `base_above` keeps the
base weights, else a top class probability at or above `single_above` picks that class's expert, else a mixture
of the experts weighted by the rounded class probabilities. The agent keeps the policy only where its validation
accuracy is higher than the threshold's; `routing.confidence_policy` reports both.

Exercise: `pytest tests/stages/experts/test_experts_stage.py`.
"""

from __future__ import annotations

import shutil
import time

import torch
from safetensors.torch import load_file

from ...errors import ForgeError
from ...evaluation import fast_exact_match, percent
from ...evaluation.intervals import paired_bootstrap
from ...evaluation.table import cell, rows_table
from ...inference.confidence import predict_confidence
from ...models import load_agent, save_agent
from ...models.formats.experts import (
    APPLICATIONS,
    MIX,
    ExpertSet,
    Router,
    cached_decomposition,
    choose_policy,
    dropped_share,
    held,
    lora_parameter_count,
    mixture_key,
    prompt_features,
    svf_parameter_count,
    target_names,
    vector,
)
from ...models.formats.experts.store import FORMAT
from ...models.formats.thoughts.checkpoint import reproducible_safetensors
from ...stage_contract import StageContext, StageResult
from ...tasks import DOMAINS, make_tasks, task_grid
from ...utils.atomic import atomic_write_bytes
from ...utils.resume import load_phase_state, save_phase_state
from .fewshot import adapt_mixture, parse_family
from .reflection import REASONING, reflect, train_reasoning_expert, worked_attempts, worked_correct
from .self_classify import train_classifier
from .training import SVFPolicy, train_expert



def _accuracy(rows: list[bool], tasks, domain: str | None = None) -> float:
    picked = [ok for ok, t in zip(rows, tasks) if domain is None or t.domain == domain]
    return percent(sum(picked) / len(picked)) if picked else 0.0


def _domain_table(rows: list[bool], tasks, domains) -> dict[str, float]:
    """Accuracy (%) per domain and over all tasks."""
    return {d: _accuracy(rows, tasks, d) for d in domains} | {"mean": _accuracy(rows, tasks)}


def choose_threshold(probs: list[float], routed: list[bool], base: list[bool]) -> tuple[float, float]:
    """(threshold, accuracy): the confidence threshold that maximises validation accuracy when prompts below
    it are answered by the base weights (`routed[i]`/`base[i]`: correct with the routed expert / the base).
    Ties go to the lowest threshold (the expert answers more often)."""
    candidates = sorted({0.0, *probs})
    best_t, best_acc = 0.0, -1.0
    for t in candidates:
        acc = sum((r if p >= t else b) for p, r, b in zip(probs, routed, base)) / max(1, len(probs))
        if acc > best_acc + 1e-12:
            best_t, best_acc = t, acc
    return best_t, best_acc


def decision_shares(keys) -> dict[str, float]:
    """Percent of prompts answered by the base weights (None), a single expert and a mixture (a mixture key)."""
    n = max(1, len(keys))
    mixtures = sum(k is not None and k.startswith(MIX) for k in keys)
    base = sum(k is None for k in keys)
    return {"base": percent(base / n), "single": percent((len(keys) - base - mixtures) / n),
            "mixture": percent(mixtures / n)}


class ExpertsRun:
    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.ec = ctx.cfg.experts
        self.seed = ctx.cfg.seed  # task streams and the facts world follow the run's seed
        unknown = [d for d in self.ec.domains if d not in DOMAINS]
        if unknown:
            raise ForgeError(f"experts.domains: unknown domain(s) {unknown}; known: {sorted(DOMAINS)}")
        if self.ec.cem_family and parse_family(self.ec.cem_family)[0] not in DOMAINS:
            raise ForgeError(f"experts.cem_family: unknown domain {parse_family(self.ec.cem_family)[0]!r}; "
                             f"known: {sorted(DOMAINS)}")
        self.source = ctx.input_model()
        self.scratch = ctx.scratch_dir

    def _fingerprint(self) -> dict:
        return {"cfg": self.ec.model_dump(mode="json"), "seed": self.seed, "source": str(self.source)}

    def _say(self, text: str) -> None:
        self.ctx.console.print(f"[experts] {text}")
        self.ctx.log.info(text)

    def run(self) -> StageResult:
        ec, ctx = self.ec, self.ctx
        start = time.perf_counter()
        agent = load_agent(self.source, device=ctx.device)
        if agent.packed:
            raise ForgeError("the experts stage needs the latent (unpacked) model, not a packed export")
        model, tok = agent.model, agent.tokenizer
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        names = target_names(model, ec.matrices)
        state = load_phase_state(self.scratch, self._fingerprint())
        decomposition = cached_decomposition(model, names, self.scratch / "svd.safetensors")
        resumed = bool(state["done"])
        applications = list(APPLICATIONS) if ec.application == "auto" else [ec.application]
        # the domain experts of each application ("weights" / "correction"), then the chosen set's extras
        trained: dict[str, dict[str, dict[str, torch.Tensor]]] = {a: {} for a in applications}
        extra: dict[str, dict[str, torch.Tensor]] = {}
        for key in state["done"]:
            app, _, domain = key.rpartition("/")
            (trained[app] if app else extra)[domain] = load_file(str(self._expert_file(key)))
        if resumed:
            self._say(f"resuming with finished experts {state['done']}")
        for app in applications:
            for d in ec.domains:
                if d in trained[app]:
                    continue
                trained[app][d] = self._train_one(model, tok, decomposition, d, state, app)
                self._keep(f"{app}/{d}", trained[app][d], state)
        self.application, self.val_means = self._choose_application(applications, state)
        experts = dict(trained[self.application]) | extra
        if ec.reflection and "reflection" not in state:
            z, state["reflection"] = self._reflect(model, tok, decomposition)
            if z is None:
                save_phase_state(self.scratch, state)
            else:
                experts[REASONING] = z
                self._keep(REASONING, z, state)
        return self._finish(agent, names, decomposition, experts, trained, state, resumed, time.perf_counter() - start)

    def _expert_file(self, key: str):
        return self.scratch / f"expert-{key.replace('/', '-')}.safetensors"

    def _keep(self, key: str, z: dict[str, torch.Tensor], state: dict) -> None:
        atomic_write_bytes(self._expert_file(key), reproducible_safetensors(
            {n: t.contiguous() for n, t in z.items()}, {"format": FORMAT, "expert": key}))
        state["done"].append(key)
        save_phase_state(self.scratch, state)  # written last: names the expert as finished

    def _choose_application(self, applications: list[str], state: dict) -> tuple[str, dict[str, float]]:
        """(the application whose domain experts reach the higher mean best-validation accuracy, each
        application's mean); a tie goes to "correction", the form a packed bundle serves (so latent and packed
        agents hold experts alike)."""
        means = {a: sum(state["logs"][a][d]["best_val"] for d in self.ec.domains) / len(self.ec.domains)
                 for a in applications}
        chosen = max(applications, key=lambda a: (round(means[a], 6), a == "correction"))
        if len(applications) > 1:
            self._say("experts held as " + ", ".join(f"{a}: mean validation {m:.1f}%" for a, m in means.items())
                      + f"; keeping '{chosen}'")
        return chosen, means

    def _reflect(self, model, tok, decomposition) -> tuple[dict[str, torch.Tensor] | None, dict]:
        """Self-reflection on train tasks, then the reasoning expert trained on what it kept (None if nothing)."""
        ec, ctx = self.ec, self.ctx
        tasks = [t for d in ec.domains for lvl in ec.levels
                 for t in make_tasks(d, lvl, "train", ec.reflection_items, ctx.sub_seed("reflect", d, lvl),
                                     world_seed=self.seed)]
        self._say(f"self-reflection: worked attempts on {len(tasks)} train tasks, rewrites of the failures")
        pairs, report = reflect(model, tok, tasks, max_new_tokens=ec.reflection_max_new_tokens)
        found = report.to_dict() | {"kept_pairs": len(pairs)}
        self._say(f"self-reflection kept {len(pairs)} reasonings; failures turned into verified reasoning (%): "
                  f"{found['turned_share']}")
        if not pairs:
            return None, found
        torch.manual_seed(ctx.sub_seed("reasoning"))
        policy = SVFPolicy(model, decomposition, ec.init_value, ec.max_mult, self.application)
        found["losses"] = train_reasoning_expert(policy, tok, pairs, steps=ec.reflection_steps,
                                                 batch_size=ec.reflection_batch, lr=ec.reflection_lr,
                                                 seed=ctx.sub_seed("reasoning-batches"))
        model.eval()
        return {n: t.detach().cpu() for n, t in policy.z(detach=True).items()}, found

    def _worked_effect(self, model, tok, decomposition, experts, test) -> dict:
        """Worked-form test accuracy (%) per domain of the entering weights and of the reasoning expert."""
        worked = [t for t in test if t.rationale]
        domains = sorted({t.domain for t in worked})
        rows = {"base": worked_attempts(model, tok, worked, self.ec.reflection_max_new_tokens)}
        if REASONING in experts:
            with held(model, decomposition, experts[REASONING], self.application):
                rows[REASONING] = worked_attempts(model, tok, worked, self.ec.reflection_max_new_tokens)
        out = {}
        for who, answers in rows.items():
            right = [worked_correct(t, a) for t, a in zip(worked, answers)]
            out[who] = {d: _accuracy(right, worked, d) for d in domains} | {"mean": _accuracy(right, worked)}
        return out

    def _val_tasks(self, domains):
        return task_grid(list(domains), list(self.ec.levels), "val", self.ec.val_items, self.seed)

    def _train_one(self, model, tok, decomposition, domain: str, state: dict, application: str):
        ec, ctx = self.ec, self.ctx
        torch.manual_seed(ctx.sub_seed("expert", domain))
        per_level = max(8, -(-ec.steps * ec.prompts_per_step // len(ec.levels)))
        train = [t for lvl in ec.levels
                 for t in make_tasks(domain, lvl, "train", per_level, ctx.sub_seed("train", domain, lvl), world_seed=self.seed)]
        val = self._val_tasks([domain])

        def validate(z) -> float:
            with held(model, decomposition, z, application):
                right = fast_exact_match(model, tok, val)
            return sum(right) / len(right)

        self._say(f"training the {domain} expert ({ec.steps} steps, held as {application})")
        best, log = train_expert(
            model, tok, decomposition, train, steps=ec.steps, prompts_per_step=ec.prompts_per_step,
            samples=ec.samples_per_prompt, temperature=ec.temperature, max_new_tokens=ec.max_new_tokens, lr=ec.lr,
            kl_coef=ec.kl_coef, warmup_steps=ec.warmup_steps, normalize_std=ec.normalize_std, init=ec.init_value,
            max_mult=ec.max_mult, val_every=ec.val_every, validate=validate, seed=ctx.sub_seed("rollouts", domain),
            log=lambda s: self._say(f"{domain} ({application}) {s}"), application=application,
        )
        state["logs"].setdefault(application, {})[domain] = {
            "val": log.val, "best_step": log.best_step, "best_val": percent(log.best_val), "steps": log.steps}
        return best

    def _correctness(self, model, tok, decomposition, experts, tasks, application=None,
                     base: list[bool] | None = None) -> dict[str, list[bool]]:
        """Greedy correctness of every task under the base weights ("base", scored unless given) and under each
        expert (held as `application`, by default the chosen one)."""
        out = {"base": base if base is not None else fast_exact_match(model, tok, tasks)}
        for name, z in experts.items():
            with held(model, decomposition, z, application or self.application):
                out[name] = fast_exact_match(model, tok, tasks)
        return out

    def _keyed_correctness(self, model, tok, decomposition, experts, keys, tasks, rights) -> list[bool]:
        """Correctness of each task under its key (None: the base weights, an expert's name, a mixture key): the
        base and single experts from `rights`, each distinct mixture scored once over the tasks it answers."""
        out = [False] * len(tasks)
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is None:
                out[i] = rights["base"][i]
            elif key in experts:
                out[i] = rights[key][i]
            else:
                groups.setdefault(key, []).append(i)
        for key, indices in groups.items():
            with held(model, decomposition, vector(key, experts), self.application):
                right = fast_exact_match(model, tok, [tasks[i] for i in indices])
            for i, ok in zip(indices, right):
                out[i] = ok
        return out

    def _finish(self, agent, names, decomposition, experts, trained, state, resumed, seconds) -> StageResult:
        ec, ctx = self.ec, self.ctx
        model, tok = agent.model, agent.tokenizer
        domains = list(ec.domains)
        test = task_grid(domains, list(ec.levels), "test", ec.test_items, self.seed)
        val = self._val_tasks(domains)
        right_test = self._correctness(model, tok, decomposition, experts, test)
        right_val = self._correctness(model, tok, decomposition, experts, val)
        # per-domain test accuracy of the entering model and of each expert, on every domain
        table = {who: _domain_table(rows, test, domains) for who, rows in right_test.items()}
        gains = {d: round(table[d][d] - table["base"][d], 2) for d in domains}
        # the application not chosen, measured on the same test items (its own-domain gains and its table)
        others = {}
        for app, vectors in trained.items():
            if app == self.application:
                continue
            rows = self._correctness(model, tok, decomposition, vectors, test, app, base=right_test["base"])
            other_table = {who: _domain_table(r, test, domains) for who, r in rows.items() if who != "base"}
            others[app] = {"test_accuracy": other_table,
                           "own_domain_gain": {d: round(other_table[d][d] - table["base"][d], 2) for d in domains}}
        cross = {d: max((abs(table[d][o] - table["base"][o]) for o in domains if o != d), default=0.0) for d in domains}

        # router: logistic regression on the base model's mean-pooled last hidden state of train prompts
        classes = domains
        per_level = max(1, -(-ec.router_items // len(ec.levels)))
        router_tasks = [t for d in domains for lvl in ec.levels
                        for t in make_tasks(d, lvl, "train", per_level, ctx.sub_seed("router", d, lvl), world_seed=self.seed)]
        router = Router.fit(prompt_features(model, tok, [t.prompt for t in router_tasks]),
                            [classes.index(t.domain) for t in router_tasks], classes, l2=ec.router_l2)
        # mode 1: the agent itself answers "domain of: <prompt>", taught on the same train prompts
        self._say(f"teaching the agent to classify prompts ({ec.classify_steps} steps)")
        torch.manual_seed(ctx.sub_seed("classifier"))
        classifier, classifier_log = train_classifier(
            model, tok, decomposition, classes, [t.prompt for t in router_tasks],
            [classes.index(t.domain) for t in router_tasks], [t.prompt for t in val],
            [classes.index(t.domain) for t in val], steps=ec.classify_steps, batch=ec.classify_batch,
            lr=ec.classify_lr, init=ec.init_value, max_mult=ec.max_mult, val_every=ec.val_every,
            seed=ctx.sub_seed("classifier-batches"), log=lambda s: self._say(f"classifier {s}"),
            application=self.application)

        def probabilities(mode, tasks):
            prompts = [t.prompt for t in tasks]
            if mode == "router":
                return router.probabilities(prompt_features(model, tok, prompts))
            with held(model, decomposition, classifier.z, self.application):
                return classifier.probabilities(model, tok, prompts)

        def routed(probs, tasks, rights):
            top = probs.argmax(-1).tolist()
            conf = [float(probs[i, k]) for i, k in enumerate(top)]
            with_expert = [rights[classes[k]][i] for i, k in enumerate(top)]
            hits = [classes[k] == t.domain for k, t in zip(top, tasks)]
            return conf, with_expert, hits

        probs_test = {mode: probabilities(mode, test) for mode in ("router", "self")}
        routing_by_mode = {mode: percent(sum(routed(p, test, right_test)[2]) / len(test)) for mode, p in probs_test.items()}
        probs_val = probabilities(ec.dispatch, val)
        conf_val, expert_val, _ = routed(probs_val, val, right_val)
        threshold, threshold_val = choose_threshold(conf_val, expert_val, right_val["base"])
        conf_test, expert_test, hits = routed(probs_test[ec.dispatch], test, right_test)
        by_threshold = [e if c >= threshold else b for c, e, b in zip(conf_test, expert_test, right_test["base"])]
        routing_accuracy = percent(sum(hits) / len(hits))

        # the confidence policy: the self-model's confidence (base weights) and the class probabilities decide
        self._say("choosing the confidence policy (self-confidence, top class probability) on validation")
        mixture_val = self._keyed_correctness(model, tok, decomposition, experts,
                                              [mixture_key(classes, row, experts) for row in probs_val], val, right_val)
        policy, policy_val = choose_policy(predict_confidence(model, tok, [t.prompt for t in val]), conf_val,
                                           right_val["base"], expert_val, mixture_val)
        keys_test = [policy.decide(classes, row, c, experts)
                     for row, c in zip(probs_test[ec.dispatch], predict_confidence(model, tok, [t.prompt for t in test]))]
        by_policy = self._keyed_correctness(model, tok, decomposition, experts, keys_test, test, right_test)
        keep_policy = bool(ec.confidence_policy) and policy_val > threshold_val + 1e-12

        threshold_acc, policy_acc = _domain_table(by_threshold, test, domains), _domain_table(by_policy, test, domains)
        dispatched_acc = policy_acc if keep_policy else threshold_acc
        best_single = max(domains, key=lambda d: table[d]["mean"])

        few_shot = self._few_shot(model, tok, decomposition, experts) if ec.cem_family else None
        reflection = state.get("reflection")
        if reflection is not None:
            reflection = dict(reflection, worked_test_accuracy=self._worked_effect(model, tok, decomposition, experts, test))

        agent.extensions["experts"] = ExpertSet(names, decomposition, experts, ec.max_mult, router, threshold,
                                                packed_rank=ec.packed_rank, classifier=classifier, dispatch=ec.dispatch,
                                                policy=policy if keep_policy else None,
                                                application=self.application)
        out_dir = ctx.stage_dir / "model"
        save_agent(agent, out_dir)
        expert_bytes = {d: (out_dir / "experts" / f"expert-{d}.safetensors").stat().st_size for d in domains}
        svf_params = svf_parameter_count(decomposition)
        lora_params = lora_parameter_count(model, names, ec.lora_rank)
        shutil.rmtree(self.scratch, ignore_errors=True)

        self._print(table, dispatched_acc, domains, routing_accuracy, threshold, svf_params, lora_params)
        self._say(f"confidence policy: base at self-confidence >= {policy.base_above:.2f}, one expert at top class "
                  f"probability >= {policy.single_above:.2f}, else a mixture; validation {percent(policy_val):.1f}% vs "
                  f"threshold {percent(threshold_val):.1f}%, test {policy_acc['mean']:.1f}% vs {threshold_acc['mean']:.1f}% "
                  f"({'kept' if keep_policy else 'not kept'})")
        metrics = {
            "test_accuracy": table, "own_domain_gain": gains, "max_cross_domain_change": cross,
            "routing": {"mode": ec.dispatch, "test_accuracy": routing_accuracy,
                        "threshold": round(threshold, 4),
                        "below_threshold_share": percent(sum(c < threshold for c in conf_test) / len(conf_test)),
                        # which rule the saved agent dispatches by, and both rules measured: the router threshold
                        # and the confidence policy (validation picks its thresholds and whether it is kept)
                        "rule": "confidence_policy" if keep_policy else "threshold",
                        "threshold_val_accuracy": percent(threshold_val),
                        "threshold_dispatched": threshold_acc,
                        "confidence_policy": {
                            "enabled": bool(ec.confidence_policy), "kept": keep_policy,
                            "base_above": round(policy.base_above, 4), "single_above": round(policy.single_above, 4),
                            "val_accuracy": percent(policy_val), "test_accuracy": policy_acc,
                            "test_share": decision_shares(keys_test),
                            "test_mixtures": len({k for k in keys_test if k is not None and k.startswith(MIX)})},
                        # routing accuracy on the test prompts of mode 1 (the agent's own answer to "domain of:
                        # <prompt>") and mode 2 (the hidden-state router), whichever dispatches
                        "by_mode": routing_by_mode,
                        "self_classifier": {"val": classifier_log.val, "best_step": classifier_log.best_step,
                                            "best_val": percent(classifier_log.best_val),
                                            "loss": [s["loss"] for s in classifier_log.steps]}},
            "dispatched_accuracy": dispatched_acc, "best_single_expert": best_single,
            "parameters": {"matrices": len(names), "svf_expert": svf_params, f"lora_rank{ec.lora_rank}": lora_params,
                           "ratio": round(svf_params / lora_params, 4)},
            "expert_file_bytes": expert_bytes, "ternary": agent.ternary, "training": state["logs"],
            # options (a) "weights" and (b) "correction": mean best-validation accuracy of each application's
            # domain experts (which chose), and the one not chosen measured on the same test items
            "application": {
                "chosen": self.application, "setting": ec.application,
                "val_mean": {a: round(m, 2) for a, m in self.val_means.items()},
                "others": others},
            "resumed": resumed, "seconds": round(seconds, 1),
            # option (b): a packed bundle keeps the top packed_rank directions; the share of each expert's
            # correction (Frobenius norm, mean over matrices) that this drops
            "packed_correction": {"rank": ec.packed_rank, "dropped_share": {
                d: round(sum(dropped_share(decomposition[n], experts[d][n], ec.packed_rank) for n in names)
                         / len(names), 4) for d in domains}},
            "summary": {
                "own_gain_mean": round(sum(gains.values()) / len(gains), 2),
                "routing": routing_accuracy,
                "dispatched": dispatched_acc["mean"], "base": table["base"]["mean"],
                "best_single": table[best_single]["mean"],
            },
        }
        if few_shot is not None:
            metrics["few_shot"] = few_shot
        if reflection is not None:
            metrics["reflection"] = reflection
        return StageResult(models={"model": out_dir}, metrics=metrics)

    def _few_shot(self, model, tok, decomposition, experts) -> dict:
        """Transformer²'s few-shot mode, measured: CEM mixture weights from a few train items of a held-out
        family, then the family's test items under the base weights and under the mixture."""
        ec, ctx = self.ec, self.ctx
        domain, level = parse_family(ec.cem_family)
        levels = [level] if level is not None else list(ec.levels)
        per_level = -(-ec.cem_shots // len(levels))
        shots = [t for lvl in levels for t in make_tasks(domain, lvl, "train", per_level,
                                                         ctx.sub_seed("cem-shots", domain, lvl), world_seed=self.seed)]
        shots = shots[: ec.cem_shots]
        test = task_grid([domain], levels, "test", ec.cem_test_items, self.seed)
        self._say(f"few-shot adaptation to {ec.cem_family}: CEM over {len(experts)} mixture weights on "
                  f"{len(shots)} examples")
        found = adapt_mixture(model, tok, decomposition, experts, shots, population=ec.cem_population,
                              elite_fraction=ec.cem_elite_fraction, iterations=ec.cem_iterations,
                              seed=ctx.sub_seed("cem", ec.cem_family), application=self.application)
        base = fast_exact_match(model, tok, test)
        with held(model, decomposition, found.z, self.application):
            mixed = fast_exact_match(model, tok, test)
        result = {
            "family": ec.cem_family, "shots": len(shots), "test_items": len(test), "weights": found.weights,
            "shots_exact": found.exact, "shots_loglik": round(found.loglik, 4), "evaluations": found.evaluations,
            "search": found.history, "seconds": round(found.seconds, 1),
            "test_accuracy": {"base": _accuracy(base, test), "cem_mixture": _accuracy(mixed, test)},
            # mixture minus base on the same items, with its paired bootstrap interval (95%)
            "difference": paired_bootstrap([float(x) for x in base], [float(x) for x in mixed]).to_dict(),
        }
        self._say(f"few-shot {ec.cem_family}: base {result['test_accuracy']['base']:.1f}% -> CEM mixture "
                  f"{result['test_accuracy']['cem_mixture']:.1f}% on {len(test)} test items "
                  f"({found.evaluations} candidates, {found.seconds:.1f}s)")
        return result

    def _print(self, table, dispatched, domains, routing, threshold, svf, lora) -> None:
        rows = [(who, *[cell(table[who][d]) for d in domains], cell(table[who]["mean"])) for who in table]
        rows.append(("dispatched", *[cell(dispatched[d]) for d in domains], cell(dispatched["mean"])))
        self.ctx.console.print(rows_table("experts: test accuracy (%) by domain", ("weights", *domains, "mean"), rows,
                                          justify="right"))
        self._say(f"routing accuracy ({self.ec.dispatch}) {routing:.1f}% (threshold {threshold:.3f}); expert {svf} numbers vs "
                  f"rank-{self.ec.lora_rank} LoRA {lora}")


def run(ctx: StageContext) -> StageResult:
    """Stage entry point (registered in `agent_forge.registry.STAGES`)."""
    return ExpertsRun(ctx).run()
