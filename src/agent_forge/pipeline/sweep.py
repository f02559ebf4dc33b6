"""Seeds and intervals: run the pipeline once per seed and report every stage's effect across seeds.

    agent-forge sweep --config smoke --seeds 0-4 [--until STAGE] [--resume] [key.path=value ...]
    agent-forge sweep --config smoke --seeds 0-4 --report-only      # the table again, from the existing runs
    agent-forge report runs/smoke-sweep                              # the same table, from sweep.json's runs

Each seed `k` is an ordinary run named `<name>-seed<k>` (the config's `name`, after overrides), with `seed=k`
added to the overrides: resumable, with its own manifest (whose history records the command and threads), and
`--resume` is passed through to every one of them. What a seed does not change is shared only in the sense
that it is not recomputed differently: the tokenizer, the task generators and the verifier are code, the same
for every seed; every stage's computation (pre-training, merging, every fine-tune, every evaluation's items)
depends on the seed, so each seed's run computes all of its stages itself. Nothing is copied between runs.

Effects (all on the trajectory's suite, `evaluation.trajectory`, which is drawn with the run's seed, so each
seed scores its own items; within one run both sides of a comparison score the same items, checked by their
digest):
* every stage after the seed stage: the model it leaves minus the model it received (`paired_change`);
* the seed stage: its best specialist (its main output) minus the base it fine-tuned them from;
* evomerge, also: the champion minus the best specialist on the suite (the seed stage's trajectory measures
  every specialist; evomerge's own metrics keep only aggregates per model, so its test items cannot be paired);
* evomerge, whether the champion keeps every skill (`retained_gains`): for each specialist's own domain d, the
  share of its gain over the base that the champion keeps, (champion_d - base_d) / (specialist_d - base_d), on
  the suite's items of domain d; a seed keeps all skills when every share is at least `KEEP_SHARE` (70%).
Besides the suite, each stage's own headline claims from its `metrics.json` (`STAGE_CLAIMS`: the evomerge
champion against the best specialist on the stage's own test, Quiet-STaR's thinking model against its
no-thought control, BitNet's retained accuracy, the curriculum's domains whose mastered level rose and its
calibration error change), per seed with their mean ± sd over seeds; these are unpaired stage numbers.
Per seed: the difference of the domain means in points with its 95% paired percentile bootstrap interval over
items (`evaluation.intervals.paired_bootstrap`; the suite has equal items per domain, so the domain mean is the
item mean). A trajectory recorded before per-item scores existed gives its `change` without an interval.
Across seeds: the mean and standard deviation (n - 1) of the per-seed effects as stored (3 decimals) and the
95% t-interval mean ± t(0.975, n - 1) sd / sqrt(n) (`scipy.stats.t`); none with fewer than two seeds.

`runs/<name>-sweep/sweep.json` holds the inputs (command, config, overrides, seeds, runs) and the summary;
`summarize` recomputes the summary from the runs alone (no training, a few bootstrap resamples), which is
what `--report-only` and `agent-forge report <name>-sweep` print, byte for byte what the sweep printed.

Exercise: `python -m pytest tests/pipeline/test_sweep.py`.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from ..errors import ForgeError
from ..evaluation.intervals import Interval
from ..evaluation.trajectory import paired_change
from ..utils import atomic_write_json
from .manifest import MANIFEST_NAME, invocations
from .report import RunData, load_run
from .runner import run_dir_for, run_pipeline

SWEEP_FILE = "sweep.json"
SWEEP_SUFFIX = "-sweep"
FORMAT = 1
CONFIDENCE = 0.95
KEEP_SHARE = 0.70  # a merge keeps a skill when it retains at least this share of the specialist's own-domain gain
SPECIALIST_PREFIX = "specialist_"
EFFECT_DEFINITION = (
    "Effects are differences of the suite's domain-mean accuracy in points (every domain, the report's levels, "
    "test split, drawn with the run's seed) between two models of one run scored on the same items: a stage's "
    "leaving minus entering model; for seed, the best specialist minus the base; for evomerge also the champion "
    "minus the best specialist. Per seed: 95% paired percentile bootstrap over items (equal items per domain, "
    "so the item mean is the domain mean). Across seeds: mean ± sd (n-1) of the per-seed effects and "
    "mean ± t(0.975, n-1)·sd/√n."
)


# ------------------------------------------------------------------------------------------------ inputs


def parse_seeds(spec: str) -> list[int]:
    """`"0-4"`, `"0,2,5"`, `"1-3,7"` -> sorted distinct non-negative seeds; ForgeError (one line) otherwise."""
    seeds: set[int] = set()
    for part in (p.strip() for p in str(spec).split(",")):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ForgeError(f"cannot read --seeds {spec!r}; use a range or a list of non-negative integers, "
                             "e.g. 0-4 or 0,2,5")
        low, high = int(match[1]), int(match[2] or match[1])
        if low > high:
            raise ForgeError(f"--seeds range {part!r} runs backwards; write it low-high, e.g. 0-4")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def sweep_command(config: str | None, seeds: str, until: str | None, overrides: Sequence[str]) -> str:
    """The command that computes this sweep, as a user types it (--resume and --report-only change no number)."""
    args = ["agent-forge", "sweep", *(["--config", config] if config else []), "--seeds", seeds,
            *(["--until", until] if until else []), *overrides]
    return shlex.join(args)


def seed_config(config: str | None, overrides: Sequence[str], seed: int):
    """The config of seed `seed`'s run: the sweep's config and overrides, then `seed=k` and `name=<name>-seed<k>`."""
    from ..config import DEFAULT_CONFIG, load_config

    base = load_config(config or DEFAULT_CONFIG, list(overrides))
    return load_config(config or DEFAULT_CONFIG, [*overrides, f"seed={seed}", f"name={base.name}-seed{seed}"])


def sweep_dir_for(config: str | None, overrides: Sequence[str]) -> Path:
    """`<run_root>/<name>-sweep`, beside the seed runs."""
    from ..config import DEFAULT_CONFIG, load_config

    base = load_config(config or DEFAULT_CONFIG, list(overrides))
    return run_dir_for(base.model_copy(update={"name": base.name + SWEEP_SUFFIX}))


# ------------------------------------------------------------------------------------------------ running


def run_sweep(config: str | None, overrides: Sequence[str], seeds_spec: str, *, until: str | None = None,
              resume: bool = False, report_only: bool = False, console: Console | None = None) -> dict:
    """Run (or, with `report_only`, only summarize) one pipeline run per seed; write and return `sweep.json`'s data."""
    console = console or Console()
    seeds = parse_seeds(seeds_spec)
    overrides = list(overrides)
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise ForgeError("--seeds sets each run's seed; drop the seed=... override")
    configs = {seed: seed_config(config, overrides, seed) for seed in seeds}  # every config checked before any run
    command = sweep_command(config, seeds_spec, until, overrides)
    runs = {seed: run_dir_for(cfg) for seed, cfg in configs.items()}
    if not report_only:
        for seed, cfg in configs.items():
            console.print(f"[bold]sweep: seed {seed} -> {runs[seed]}[/]")
            run_pipeline(cfg, until=until, resume=resume, console=console)
    elif not any((run / MANIFEST_NAME).is_file() for run in runs.values()):
        raise ForgeError(f"no run of this sweep exists yet (looked for {', '.join(str(r) for r in runs.values())}); "
                         "run it without --report-only first")
    inputs = {"format": FORMAT, "command": command, "config": config, "overrides": overrides, "seeds": seeds,
              "until": until, "runs": {str(seed): str(run) for seed, run in runs.items()}}
    data = {**inputs, **summarize(inputs)}
    target = sweep_dir_for(config, overrides)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / SWEEP_FILE, data)
    return data


def read_sweep(path: str | Path) -> dict:
    """`sweep.json`'s inputs from a sweep directory (or the file), re-summarized from its runs as they are now."""
    from .report import RUNS_ROOT

    path = Path(path).expanduser()
    if not path.exists() and not path.is_absolute() and (RUNS_ROOT / path).exists():
        path = RUNS_ROOT / path
    file = path / SWEEP_FILE if path.is_dir() else path
    try:
        inputs = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ForgeError(f"cannot read the sweep at {file} ({type(exc).__name__})") from None
    keys = ("format", "command", "config", "overrides", "seeds", "until", "runs")
    if not isinstance(inputs, dict) or any(k not in inputs for k in keys):
        raise ForgeError(f"{file} is not a sweep.json written by agent-forge sweep")
    inputs = {k: inputs[k] for k in keys}
    return {**inputs, **summarize(inputs)}


def is_sweep_dir(path: str | Path) -> bool:
    from .report import RUNS_ROOT

    path = Path(path).expanduser()
    return (path / SWEEP_FILE).is_file() or (not path.is_absolute() and (RUNS_ROOT / path / SWEEP_FILE).is_file())


# ------------------------------------------------------------------------------------------------ summary


def summarize(inputs: dict) -> dict:
    """Per-seed effects of every stage and their across-seed statistics, from the runs on disk."""
    runs: dict[str, RunData] = {}
    for seed in inputs["seeds"]:
        path = Path(inputs["runs"][str(seed)])
        if (path / MANIFEST_NAME).is_file():
            runs[str(seed)] = load_run(path)
    stage_order: list[str] = []
    for run in runs.values():
        stage_order += [s.name for s in run.stages if s.name not in stage_order]
    effects = []
    for stage in stage_order:
        for label, measure in STAGE_EFFECTS.get(stage, [DEFAULT_EFFECT]):
            per_seed = {seed: effect for seed, run in runs.items() if (effect := measure(run, stage)) is not None}
            if per_seed:
                effects.append({"stage": stage, "label": label, "per_seed": per_seed,
                                "across": across_seeds([e["mean"] for e in per_seed.values()])})
    threads = {seed: sorted({e["threads"] for e in invocations(run.manifest) if "threads" in e})
               for seed, run in runs.items()}
    retained = {seed: shares for seed, run in runs.items() if (shares := retained_gains(run))}
    claims = []
    for stage in stage_order:
        for label, read in STAGE_CLAIMS.get(stage, []):
            per_seed = {}
            for seed, run in runs.items():
                metrics = next((s.metrics for s in run.stages if s.name == stage and s.metrics), None)
                try:
                    per_seed[seed] = round(float(read(metrics)), 3) if metrics else None
                except (KeyError, TypeError, ValueError):
                    per_seed[seed] = None  # written by a version without this number
            values = [v for v in per_seed.values() if v is not None]
            if values:
                claims.append({"stage": stage, "label": label, "per_seed": per_seed, "across": across_seeds(values)})
    return {"effect_definition": EFFECT_DEFINITION, "threads": threads, "effects": effects, "retained": retained,
            "claims": claims}


def _champion_minus_best_specialist_own_test(m: dict) -> float:
    means = m["test_mean_over_domains"]
    return means["champion"] - max(v for k, v in means.items() if k.startswith(SPECIALIST_PREFIX))


# each stage's own headline numbers (its metrics.json), per seed; label -> reader
STAGE_CLAIMS: dict[str, list[tuple[str, Any]]] = {
    "evomerge": [("champion − best specialist, stage test (points)", _champion_minus_best_specialist_own_test)],
    "quietstar": [("thinking − no-thought control, multi-step test (points)",
                   lambda m: m["summary"]["acc_thinking"] - m["summary"]["acc_no_thoughts"])],
    "bitnet": [("retained accuracy, stage test (% of full precision)", lambda m: 100 * m["retained_fraction"])],
    "curriculum": [("domains whose highest mastered level rose", lambda m: m["summary"]["domains_improved"]),
                    ("mastered levels' accuracy, after − before (points)", lambda m: m["summary"]["mastered_change"]),
                    ("calibration error of self-confidence, after − before", lambda m: m["ece_after"] - m["ece_before"])],
}


def retained_gains(run: RunData) -> dict[str, float | None]:
    """Per specialist's own domain: the share of its gain over the base that evomerge's champion keeps on the
    suite, (champion - base) / (specialist - base), 3 decimals; None where the specialist gained nothing. Empty
    when the run has no seed trajectory with a base or no evomerge champion."""
    seed_t, evo_t = _trajectory(run, "seed"), _trajectory(run, "evomerge")
    leaving = (seed_t or {}).get("leaving") or {}
    champion = ((evo_t or {}).get("leaving") or {}).get("model")
    if "base" not in leaving or champion is None:
        return {}
    base, merged = leaving["base"]["suite"]["by_domain"], champion["suite"]["by_domain"]
    shares: dict[str, float | None] = {}
    for name in (k for k in leaving if k.startswith(SPECIALIST_PREFIX)):
        domain = name[len(SPECIALIST_PREFIX):]
        gain = leaving[name]["suite"]["by_domain"].get(domain, 0.0) - base.get(domain, 0.0)
        shares[domain] = round((merged.get(domain, 0.0) - base.get(domain, 0.0)) / gain, 3) if gain > 0 else None
    return shares


def across_seeds(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, sd (n - 1) and the t-interval of the mean over seeds; sd and interval None below two seeds."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": round(mean, 3), "sd": None, "low": None, "high": None, "confidence": confidence}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": round(mean, 3), "sd": round(sd, 3), "low": round(mean - half, 3),
            "high": round(mean + half, 3), "confidence": confidence}


def _trajectory(run: RunData, stage: str) -> dict | None:
    return next((s.trajectory for s in run.stages if s.name == stage and s.trajectory), None)


def _effect(a: dict, b: dict, a_name: str, b_name: str, fallback: float | None = None) -> dict | None:
    """b - a on the suite: the paired interval when both have per-item scores, else the recorded change alone."""
    interval: Interval | None = paired_change(a, b)
    if interval is not None:
        return {**interval.to_dict(), "n": len(a["suite"]["scores"]), "a": a_name, "b": b_name}
    if fallback is None:
        return None
    return {"mean": fallback, "low": None, "high": None, "n": None, "a": a_name, "b": b_name}


def leaving_minus_entering(run: RunData, stage: str) -> dict | None:
    t = _trajectory(run, stage)
    if not t or not t.get("entering") or t.get("main_output") not in (t.get("leaving") or {}):
        return None
    entering = t["entering"]
    return _effect(entering["measurement"], t["leaving"][t["main_output"]], entering["input"], t["main_output"],
                   fallback=t.get("change"))


def best_specialist_minus_base(run: RunData, stage: str) -> dict | None:
    t = _trajectory(run, stage)
    leaving = (t or {}).get("leaving") or {}
    best = _best_specialist(leaving)
    if best is None or "base" not in leaving:
        return None
    change = round(leaving[best]["suite"]["domain_mean"] - leaving["base"]["suite"]["domain_mean"], 2)
    return _effect(leaving["base"], leaving[best], "base", best, fallback=change)


def champion_minus_best_specialist(run: RunData, stage: str) -> dict | None:
    t, seed_t = _trajectory(run, stage), _trajectory(run, "seed")
    champion = ((t or {}).get("leaving") or {}).get("model")
    specialists = (seed_t or {}).get("leaving") or {}
    best = _best_specialist(specialists)
    if champion is None or best is None:
        return None
    change = round(champion["suite"]["domain_mean"] - specialists[best]["suite"]["domain_mean"], 2)
    return _effect(specialists[best], champion, best, "champion", fallback=change)


def _best_specialist(leaving: dict) -> str | None:
    """The specialist with the highest suite domain mean (the first of equals, in output order)."""
    names = [k for k in leaving if k.startswith(SPECIALIST_PREFIX)]
    return max(names, key=lambda k: leaving[k]["suite"]["domain_mean"]) if names else None


DEFAULT_EFFECT = ("leaving − entering", leaving_minus_entering)
STAGE_EFFECTS = {
    "seed": [("best specialist − base", best_specialist_minus_base)],
    "evomerge": [DEFAULT_EFFECT, ("champion − best specialist", champion_minus_best_specialist)],
}
