"""Each stage's own table in a run's report: one function per stage turns its `metrics.json` into columns, rows
and a closing sentence (`STAGE_TABLES`); `stage_tables(run)` renders every finished stage's, in run order, and
notes a metrics file this version cannot read. `pipeline/report.py` places them after the trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..evaluation.table import cell, markdown_table
from .runner import METRICS_NAME

if TYPE_CHECKING:
    from .report import RunData


@dataclass
class StageTable:
    """A stage's own results: a table of formatted cells and a closing sentence."""

    stage: str
    duration_s: float | None
    columns: list[str]
    rows: list[list[str]]
    note: str = ""

    @property
    def heading(self) -> str:
        return self.stage + (f" ({self.duration_s:.0f} s)" if self.duration_s else "")

    def markdown(self) -> str:
        text = markdown_table(self.columns, self.rows) if self.columns else ""
        return text + (f"\n\n{self.note}" if text and self.note else self.note)


Table = tuple[list[str], list[list[str]], str]


def _levels_label(levels: list[str]) -> str:
    numbers = sorted(int(level) for level in levels)
    if numbers and numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return f"L{numbers[0]}-{numbers[-1]}"
    return "L" + ",".join(map(str, numbers))


def seed_table(m: dict) -> Table:
    first = next(iter(m["eval"].values()))["by_domain_level"]
    domains = list(first)
    rows = [[name, *("/".join(cell(v, 0) for v in ev["by_domain_level"][d].values()) for d in domains)]
            for name, ev in m["eval"].items()]
    leads = "; ".join(
        f"{d}: +{v['lead_over_other_specialists']:.1f} over the other specialists, +{v['lead_over_base']:.1f} over the base"
        for d, v in m["specialist_lead"].items()
    )
    return ["model", *(f"{d} {_levels_label(list(first[d]))}" for d in domains)], rows, \
        f"Specialist leads in their own domain (mean of levels): {leads}."


def evomerge_table(m: dict) -> Table:
    champ = m["champion"]
    return (
        ["model", "test accuracy, mean over " + ", ".join(m["domains"])],
        [[name, cell(value)] for name, value in m["test_mean_over_domains"].items()],
        f"Champion: `{champ['label']}` (candidate {champ['id']}, generation {champ['generation']}); "
        f"{m['evaluations']} evaluations, stopped: {m['stop_reason']}; beats every specialist: "
        f"{m['beats_every_specialist']}, beats the uniform linear merge: {m['beats_uniform_linear']}.",
    )


def quietstar_table(m: dict) -> Table:
    qs, plain, before = m["quietstar"], m.get("no_thoughts", {}), m["input_model"]
    rows = [
        ("model entering the stage (no training)", before["val_answer_nll"], before["test_multistep_accuracy"]),
        ("Quiet-STaR fine-tune, thinking", qs["val_answer_nll"], qs["test_multistep_accuracy"]),
        ("Quiet-STaR fine-tune, thinking off", qs["val_answer_nll_no_thinking"], qs["test_multistep_accuracy_no_thinking"]),
    ]
    if plain:
        rows.append(("same steps and data, no thoughts", plain["val_answer_nll"], plain["test_multistep_accuracy"]))
    tail = qs.get("train_tail", {})
    return (
        ["model", "val NLL of answer tokens", "test accuracy, multi-step tasks (%)"],
        [[name, cell(nll, 3), cell(acc)] for name, nll, acc in rows],
        f"Mean mixing weight on the post-thought prediction at the end of training: "
        f"{tail.get('mean_mix_weight', float('nan')):.4f}; items: {m['eval_items']}.",
    )


def _scaled(value: float | None, factor: float = 1.0, digits: int = 1) -> str:
    """`factor * value` with `digits` decimals; "-" when the stage recorded no value (e.g. nothing to retain)."""
    return "-" if value is None else f"{factor * value:.{digits}f}"


def bitnet_table(m: dict) -> Table:
    size, retained = m["size"], m["retained_fraction"]
    retained = "not defined (full precision scored 0)" if retained is None else f"{100 * retained:.1f}% of full precision"
    return (
        ["model", "test accuracy (%)"],
        [[name, cell(value, 2)] for name, value in m["accuracy"].items()],
        f"Packed linear weights: {size['bits_per_weight']:.4f} bits per weight (measured from the files); "
        f"decoder linears {size['linear_shrink_ratio']:.2f}x smaller, model file {size['model_shrink_ratio']:.2f}x "
        f"smaller ({size['fp32_model_bytes']:,} -> {size['file_bytes']:,} bytes); retained accuracy "
        f"{retained}; {_scaled(m['ternary']['zero_fraction'], 100)}% of the "
        f"ternary weights are zero; packed inference kernel: {m['kernel']}.",
    )


def curriculum_table(m: dict) -> Table:
    def change(d: dict, part: str) -> str:
        levels = ",".join(map(str, d[f"{part}_levels"])) or ("-" if part == "mastered" else "")
        return f"{cell(d[f'{part}_before'])} -> {cell(d[f'{part}_after'])} (L{levels})"

    return (
        ["domain", "frontier (baseline)", "highest mastered after", "mastered levels: before -> after",
         "levels above baseline: before -> after"],
        [[domain, str(m["frontier"][domain]), str(m["mastered"][domain]), change(d, "mastered"), change(d, "above")]
         for domain, d in m["by_domain"].items()],
        f"Domains whose highest mastered level rose: {m['domains_improved'] or 'none'}; expected calibration error of "
        f"the self-predicted confidence {_scaled(m['ece_before'], digits=3)} -> {_scaled(m['ece_after'], digits=3)}; "
        f"{m['levels_trained']} curriculum levels in {m['seconds']:.0f} s; model still ternary: {m['ternary']['ternary']}.",
    )


def experts_table(m: dict) -> Table:
    acc = m["test_accuracy"]
    domains = [d for d in acc["base"] if d != "mean"]
    rows = [[("entering model" if who == "base" else f"{who} expert"), *[cell(v[d]) for d in domains], cell(v["mean"])]
            for who, v in acc.items()]
    rows.append(["dispatched", *[cell(m["dispatched_accuracy"][d]) for d in domains], cell(m["dispatched_accuracy"]["mean"])])
    p, r = m["parameters"], m["routing"]
    lora = next(k for k in p if k.startswith("lora_rank"))
    names = {"self": "the agent's own classification", "router": "hidden-state router"}
    by_mode = "; ".join(f"{names.get(k, k)} {cell(v)}%" for k, v in r.get("by_mode", {}).items())
    policy = r.get("confidence_policy")
    if policy:
        share = policy["test_share"]
        policy_text = (
            f" Confidence policy (base weights at self-confidence >= {policy['base_above']}, one expert at top class "
            f"probability >= {policy['single_above']}, else a mixture): test {cell(policy['test_accuracy']['mean'])}% "
            f"vs {cell(r['threshold_dispatched']['mean'])}% by the threshold; base/single/mixture "
            f"{cell(share['base'])}/{cell(share['single'])}/{cell(share['mixture'])}% of the test prompts; "
            f"{'dispatches' if policy['kept'] else 'not kept (validation)'}.")
    else:
        policy_text = ""
    return (
        ["weights", *domains, "mean"], rows,
        f"Test accuracy (%) of each expert on every domain. Routing accuracy {cell(r['test_accuracy'])}% "
        + (f"(dispatch: {names.get(r['mode'], r['mode'])}; by mode on the test prompts: {by_mode}) " if by_mode else "")
        + f"(confidence threshold {r['threshold']}); one expert has {p['svf_expert']:,} numbers, a "
        f"{lora.replace('lora_rank', 'rank-')} LoRA on the same {p['matrices']} matrices {p[lora]:,}." + policy_text
        + _application_text(m.get("application"), m["own_domain_gain"]) + _few_shot_text(m.get("few_shot"))
        + _reflection_text(m.get("reflection")),
    )


APPLICATION_NAMES = {"weights": "W' written into the latent weights and re-quantized (option a)",
                     "correction": "a full-precision correction beside the ternary matmul (option b)"}


def _application_text(a: dict | None, gains: dict) -> str:
    """How the experts act on the ternary model, which validation chose, and the other option's test gains."""
    if not a:
        return ""
    chosen = a["chosen"]
    text = f" Experts act as {APPLICATION_NAMES.get(chosen, chosen)}"
    if len(a.get("val_mean", {})) > 1:
        text += (", chosen on validation (mean over the domain experts: "
                 + ", ".join(f"{k} {cell(v)}%" for k, v in a["val_mean"].items()) + ")")
    text += "; own-domain test gain over the entering model: " + ", ".join(
        f"{d} {v:+.1f}" for d, v in gains.items())
    for other, found in a.get("others", {}).items():
        text += f"; as {other}: " + ", ".join(f"{d} {v:+.1f}" for d, v in found["own_domain_gain"].items())
    return text + "."


def _few_shot_text(f: dict | None) -> str:
    """The few-shot sentence: CEM's mixture against the base weights on the held-out family's test items."""
    if not f:
        return ""
    acc, weights = f["test_accuracy"], ", ".join(f"{k} {v:.2f}" for k, v in f["weights"].items())
    text = (f" Few-shot adaptation to {f['family']} (held out: no expert trained on it): CEM mixture ({weights}) "
            f"from {f['shots']} examples, {cell(acc['base'])}% -> {cell(acc['cem_mixture'])}% on {f['test_items']} "
            f"test items")
    if "difference" in f:
        d = f["difference"]
        text += f", difference {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] (paired bootstrap, 95%)"
    return text + "."


def _reflection_text(r: dict | None) -> str:
    """The self-reflection sentence of the experts table: failures turned into verified reasoning, worked-form effect."""
    if not r:
        return ""
    turned = "; ".join(f"{d} {r['accepted'][d]}/{r['failures'][d]} ({cell(r['turned_share'][d])}%)" for d in r["failures"])
    text = (f" Self-reflection: of the worked-form failures on train tasks, rewritten with the hint and kept only if "
            f"right without it: {turned}; {r['kept_pairs']} reasonings kept (with the first-pass successes).")
    worked = r.get("worked_test_accuracy", {})
    if "reasoning" in worked:
        domains = [d for d in worked["base"] if d != "mean"]
        text += (" Worked-form test accuracy, entering weights -> reasoning expert: "
                 + "; ".join(f"{d} {cell(worked['base'][d])} -> {cell(worked['reasoning'][d])}%" for d in domains) + ".")
    elif worked:
        text += " Nothing was kept, so there is no reasoning expert."
    return text


def tools_table(m: dict) -> Table:
    rows = []
    for domain, entry in m["test"].items():
        levels = entry["levels"]
        for level, v in levels.items():
            rows.append([domain, level, cell(v["entering"]), cell(v["without_tools"]), cell(v["with_tools"]),
                         cell(v["call_share"])])
        rows.append([domain, "all", cell(entry["entering"]), cell(entry["without_tools"]), cell(entry["with_tools"]),
                     cell(entry["call_share"])])
    tool_levels = "; ".join(f"{d} {', '.join(map(str, lv)) or 'none'}" for d, lv in m["tool_levels"].items())
    sft = m["training"].get("sft", {})
    return (
        ["domain", "level", "entering", "without tools", "with tools", "answers calling a tool (%)"], rows,
        f"Test accuracy (%) answering greedily without thoughts. Tool levels (entering validation below the "
        f"threshold): {tool_levels}. Supervised on {sft.get('tool_traces', 0):,} tool traces and "
        f"{sft.get('no_call_answers', 0):,} no-call answers; kept the {m['chosen']} model (validation with tools: "
        + ", ".join(f"{k} {cell(v, 2)}" for k, v in m["selection_val_accuracy"].items()) + "). Memory: "
        f"{m['memory']['passages']} passages, {m['memory']['k']} per search.",
    )


def adas_table(m: dict) -> Table:
    chosen = m["chosen"]["name"]

    def interval(v: dict | None) -> str:
        return "-" if v is None else f"{cell(v['mean'])} [{cell(v['low'])}, {cell(v['high'])}]"

    rows = [[e["name"] + (" (chosen)" if e["name"] == chosen else ""), e["origin"], str(e["generation"]),
             interval(e["validation"]), f"{e['tokens_per_answer']:,.0f}", f"{e['ms_per_answer']:,.0f}",
             "yes" if e["pareto"] else "", ("over, stopped early" if e.get("stopped_early") else "over") if e.get("over_budget") else "", e["describe"]]
            for e in m["archive"]]
    t = m["test"]
    e, c, d = t["entering"], t["chosen"], t["difference"]
    return (
        ["design", "origin", "gen", "validation (95% CI)", "tokens/answer", "ms/answer", "Pareto", "budget",
         "settings"], rows,
        f"Test ({t['items']} items): entering design {e['design']!r} {cell(e['mean'])}% ({e['tokens_per_answer']:,.0f} "
        f"tokens, {e['ms_per_answer']:,.0f} ms per answer), chosen {c['design']!r} {cell(c['mean'])}% "
        f"({c['tokens_per_answer']:,.0f} tokens, {c['ms_per_answer']:,.0f} ms); difference {cell(d['mean'])} "
        f"[{cell(d['low'])}, {cell(d['high'])}] (paired bootstrap, 95%): "
        f"{'beyond' if t['beats_entering_beyond_interval'] else 'within'} the interval. {m['generations']} "
        f"generations ({m['stopped']}), {m['validation_items']} validation items, token budget "
        f"{m['token_budget']:,.0f} per answer. Reproduce: `{m['eval_command']}`.",
    )


def baking_table(m: dict) -> Table:
    """One row per bake tried (candidate, prompted gain on validation, held-out KL before/after, the target's
    validation score before, after and re-prompted, kept or why not), then the knowledge, identity and test
    summaries."""
    gains = {c["name"]: c["gain"] for c in m["candidates"]}
    rows = []
    for b in m["bakes"]:
        curve = b.get("strength_curve") or []
        rows.append([
            f"{b['name']}" + (f" (pursuit {b['round']})" if b.get("round") else ""), cell(gains.get(b["name"])),
            f"{b['kl_before']:.3f} -> {b['kl_after']:.3f} ({b['kl_ratio']:.1f}x)",
            f"{cell(b['target_before'])} -> {cell(b['target_after'])} ({cell(b['reprompted'])})",
            "monotone" if b.get("monotone_kl") else f"not monotone ({len(curve)} points)",
            "kept" if b["kept"] else "; ".join(b.get("reasons") or ["rejected"]),
        ])
    k, ident, test = m["knowledge"], m["identity"], m["test_accuracy"]
    change = ", ".join(f"{d} {v:+.1f}" for d, v in test["change"].items())
    drift = ", ".join(f"{n} turns {v['questionnaire']:.0f}/{v['compliance']:.0f}" for n, v in ident["drift"].items())
    return (
        ["bake", "prompted gain (val)", "held-out KL before -> after", "target val: before -> after (re-prompted)",
         "half-baking KL curve", "kept"], rows,
        f"{len(m['kept'])} of {len(m['bakes'])} bakes kept ({m['summary']['worst_domain_change']:+.1f} worst domain change "
        f"on test; per domain: {change}). Facts questions without passages (test): {cell(k['entering_unprompted'])}% "
        f"entering, {cell(k['leaving_unprompted'])}% leaving. Identity without a prompt: questionnaire "
        f"{cell(ident['leaving']['questionnaire'])}%, rule compliance {cell(ident['leaving']['compliance'])}% "
        f"(entering with the prompt: {cell(ident['entering_prompted']['questionnaire'])}% / "
        f"{cell(ident['entering_prompted']['compliance'])}%); over a conversation (questionnaire/compliance): "
        f"{drift}. KL: per-token forward KL to the prompted teacher on held-out trajectories.",
    )


def package_table(m: dict) -> Table:
    parts, total = m["parts"], m["total_bytes"]
    rows = [[part, f"{size:,}", cell(100 * size / max(1, total), 1)] for part, size in parts.items() if size]
    rows.append(["bundle (every file but bundle.json)", f"{total:,}", "100.0"])
    ev, int8 = m["evaluation"], m["int8_embeddings"]
    if "val_accuracy" in int8:
        q = (f"int8 embeddings / LM head ({int8['fp32_bytes']:,} -> {int8['int8_bytes']:,} bytes): {int8['decision']}; "
             f"validation {cell(int8['val_accuracy']['fp32'], 2)} -> {cell(int8['val_accuracy']['int8'], 2)}%, "
             f"test {cell(int8['test_accuracy']['fp32'], 2)} -> {cell(int8['test_accuracy']['int8'], 2)}%")
    else:
        q = "int8 embeddings / LM head: off"
    return (
        ["part", "bytes", "share (%)"], rows,
        f"Bundle `{m['bundle']}/` ({'packed 2-bit' if m['packed'] else 'full-precision HF folder'}; extensions: "
        f"{', '.join(m['extensions']) or 'none'}): test accuracy {cell(ev['accuracy'], 2)}% on {ev['n']} items "
        f"(fast path), equal to the entering agent's item for item: {ev['equals_entering']}. {q}.",
    )


def generic_table(m: dict) -> Table:
    """A stage without a table of its own: its headline numbers."""
    from .runner import headline_metrics

    values = headline_metrics(m, limit=20)
    return ["metric", "value"], [[k, cell(v, 4) if isinstance(v, float) else str(v)] for k, v in values.items()], ""


STAGE_TABLES: dict[str, Callable[[dict], Table]] = {
    "seed": seed_table, "evomerge": evomerge_table, "quietstar": quietstar_table, "bitnet": bitnet_table,
    "curriculum": curriculum_table, "experts": experts_table, "baking": baking_table, "tools": tools_table,
    "adas": adas_table, "package": package_table,
}


def stage_tables(run: RunData) -> list[StageTable]:
    """Each finished stage's own table, in run order; a metrics file this version cannot read gets a note."""
    tables = []
    for stage in run.stages:
        if stage.metrics is None:
            continue
        render = STAGE_TABLES.get(stage.name, generic_table)
        try:
            columns, rows, note = render(stage.metrics)
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as exc:
            columns, rows, note = [], [], (f"{stage.dir.name}/{METRICS_NAME} lacks what this table needs "
                                           f"({type(exc).__name__}: {exc}); it was written by another version.")
        tables.append(StageTable(stage.name, stage.duration_s, columns, rows, note))
    return tables
