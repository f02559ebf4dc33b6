"""`agent-forge learn RUN` and `agent-forge rollback RUN [VERSION]`: logged experience -> a new version.

`learn(target, settings)`:
1. lock the deployment, make its version store if the run has none (`deployment.ensure_store`);
2. plan, once: the logged experience (`experience.collect`; none -> a one-line error), its held-out cells, the
   deployed version it starts from and the candidate's name; the plan is kept in `<home>/.resume/learn/plan.json`
   with the settings' digest, so a `learn` killed at any point resumes the same plan (a changed deployed
   version or changed settings start a new plan);
3. measure the deployed version (`gate.measure`, kept in `before.json`), run the cycles on a copy of it
   (`cycles.train_cycles`, checkpointed), save the candidate in the scratch folder, measure it, decide
   (`gate.decide`) and publish it as `versions/<candidate>/` with `learn.json` (experience, measurements,
   decision, reason) inside; a candidate that fails the gate is kept there, not promoted, with its reason;
4. a candidate that passed: evaluate the canary on it and write the run to the log (`trigger="promotion"`), then
   move the pointer (`interactions.set_current`, atomic `os.replace`; history line "promote"). A server
   watching the store swaps to it without dropping requests (`serve.versions`).
Nothing under `versions/`, the pointer or the log changes before step 4, so a SIGKILL during learning leaves
the served version and the log as they were; the rerun continues from the last checkpoint.

`rollback(target, version=None)`: point the store back at `version` (default: the version current before the
present one, from `history.jsonl`), recorded as a "rollback" history line. Version folders are never touched.

Exercise: `pytest tests/learning`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..errors import ForgeError
from ..interactions import CanaryRun, InteractionLog, assess, current_version, history, set_current
from ..interactions.versions import VERSIONS
from ..models import load_agent, save_agent
from ..models.formats.ternary import is_packed_export
from ..utils import atomic_write_json
from . import gate
from .cycles import train_cycles
from .deployment import (Deployment, DeploymentLock, ensure_store, next_version, open_deployment, publish,
                         remove_tree, version_names)
from .distribution import heldout_cells, heldout_tasks
from .experience import Experience, collect
from .settings import LearnSettings

log = logging.getLogger("agent_forge.learning")
PLAN, BEFORE, RECORD = "plan.json", "before.json", "learn.json"


@dataclass(frozen=True)
class Outcome:
    version: str  # the candidate
    base: str  # the version it was learned from
    promoted: bool
    reason: str
    before: dict
    after: dict
    resumed: bool


def learn(target: str, settings: LearnSettings, *, say: Callable[[str], None] = print,
          log_target: str | None = None) -> Outcome:
    dep = open_deployment(target)
    with DeploymentLock(dep.home):
        base = ensure_store(dep)
        log_file = log_target or str(dep.log_path)
        if log_target is None and not dep.log_path.is_file():
            raise ForgeError(f"no logged experience: {dep.log_path} does not exist (serve the agent first)")
        interactions = InteractionLog.open(log_file)
        try:
            return _learn(dep, base, settings, interactions, say)
        finally:
            interactions.close()


def _learn(dep: Deployment, base: str, settings: LearnSettings, interactions: InteractionLog, say) -> Outcome:
    scratch = dep.scratch
    plan, resumed = _plan(dep, base, settings, interactions, scratch)
    exp = Experience.from_json(plan["experience"])
    candidate = plan["candidate"]
    final = dep.store / VERSIONS / candidate
    cells = plan["cells"]
    heldout = heldout_tasks(cells, settings.heldout_per_cell, settings.seed + 1, {t.prompt for t in exp.tasks},
                            dep.facts_world)
    base_dir = dep.store / VERSIONS / plan["base"]
    if base_dir.is_dir() and is_packed_export(base_dir):
        raise ForgeError(f"version {plan['base']} is a packed export (inference only); learn needs a trainable "
                         "checkpoint: deploy the run's full-precision or latent-ternary model")
    if resumed:
        say(f"resuming learn {plan['base']} -> {candidate}")
    say(f"experience: {exp.summary()}")
    if not final.exists():
        before = _cached(scratch / BEFORE, lambda: gate.measure(base_dir, heldout, cells, settings))
        say(f"deployed {plan['base']}: held-out {before['heldout']:.1f}% ({before['heldout_n']} tasks, cells "
            f"{sorted(cells)}), suite {before['suite']:.2f}")
        agent = load_agent(base_dir)
        started = time.perf_counter()
        cycles = train_cycles(agent, exp, settings, scratch, facts_world=dep.facts_world,
                              on_cycle=lambda c, m: say(f"cycle {c}/{settings.cycles}: reward {m.get('reward')}, "
                                                        f"kl {m.get('kl')}"))
        staging = scratch / "candidate"
        remove_tree(staging)
        save_agent(agent, staging)
        after = gate.measure(staging, heldout, cells, settings)
        decision = gate.decide(before, after, settings)
        atomic_write_json(staging / RECORD, {
            "version": candidate, "base": plan["base"], "created": time.time(), "settings": asdict(settings),
            "experience": exp.summary(), "cells": cells, "before": before, "after": after,
            "promote": decision.promote, "reason": decision.reason, "cycles": cycles,
            "train_seconds": round(time.perf_counter() - started, 1),
        })
        publish(staging, final)
    record = json.loads((final / RECORD).read_text())
    promoted = False
    if record["promote"]:
        if current_version(dep.store)[0] != candidate:
            _canary(final, candidate, dep, settings, interactions, say)
            set_current(dep.store, candidate, "promote", record["reason"])
        promoted = True
        say(f"promoted {candidate}: {record['reason']}")
    else:
        say(f"kept {candidate} without promoting it: {record['reason']}")
    remove_tree(scratch)
    return Outcome(candidate, record["base"], promoted, record["reason"], record["before"], record["after"], resumed)


def _plan(dep: Deployment, base: str, settings: LearnSettings, interactions: InteractionLog, scratch: Path
          ) -> tuple[dict, bool]:
    path = scratch / PLAN
    if path.is_file():
        try:
            plan = json.loads(path.read_text())
        except ValueError:
            plan = None
        if plan and plan.get("settings") == settings.digest() and (
                plan.get("base") == base or (dep.store / VERSIONS / plan.get("candidate", "")).exists()):
            return plan, True
        log.info("starting a new plan (the deployed version or the settings changed)")
    remove_tree(scratch)
    exp = collect(interactions, dep.facts_world)
    if not exp.tasks and not exp.demonstrations and not exp.replay:
        raise ForgeError(f"no logged experience to learn from in {interactions.describe()}: no verified task, "
                         "correction or rated answer yet")
    if not exp.tasks:
        raise ForgeError("no logged experience with a verifier: the gate needs recognised tasks to measure on")
    cells = heldout_cells(exp.cells, settings.min_cell_share)
    if not cells:
        raise ForgeError("the logged tasks fit no task level: there is no held-out distribution to measure on")
    names = version_names(dep.store)
    plan = {"settings": settings.digest(), "base": base, "candidate": next_version(dep.store),
            "experience": exp.to_json(), "cells": cells, "versions": names}
    scratch.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, plan)
    return plan, False


def _cached(path: Path, compute) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    value = compute()
    atomic_write_json(path, value)
    return value


def _canary(folder: Path, version: str, dep: Deployment, settings: LearnSettings, interactions: InteractionLog,
            say) -> None:
    accuracy, by_domain, n = gate.canary(folder, settings.canary_per_domain, dep.facts_world)
    reference, falling = assess(interactions.canary_runs(limit=5), accuracy)
    interactions.add_canary(CanaryRun(version, "promotion", accuracy, n, by_domain, reference, falling)).result(30)
    say(f"canary on {version}: {accuracy:.1f}% of {n}" + (f" - FALLING below {reference:.1f}%" if falling else ""))


def rollback(target: str, version: str | None = None, *, say: Callable[[str], None] = print) -> str:
    dep = open_deployment(target)
    from ..interactions import is_store

    if not is_store(dep.store):
        raise ForgeError(f"{target} has no deployed versions yet (run `agent-forge learn` first)")
    with DeploymentLock(dep.home):
        now = current_version(dep.store)[0]
        if version is None:
            version = _previous(dep.store, now)
        if version not in version_names(dep.store):
            raise ForgeError(f"unknown version {version}; {dep.store / VERSIONS} has {', '.join(version_names(dep.store))}")
        if version == now:
            say(f"{version} is already the current version")
            return version
        set_current(dep.store, version, "rollback", f"from {now}")
        say(f"rolled back {now} -> {version}")
        return version


def _previous(store: Path, now: str) -> str:
    """The version that was current before `now` became current (from the history, newest first)."""
    entries = history(store)
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].get("version") == now:
            for earlier in reversed(entries[:i]):
                if earlier.get("version") != now:
                    return earlier["version"]
    raise ForgeError(f"no version before {now} to roll back to; name one: agent-forge rollback RUN VERSION")
