"""Print the README's results tables (markdown) from a finished run's metrics files.

    python scripts/results_table.py runs/tiny

Every number in the README's results section comes from this script applied to the run named there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _metrics(run: Path, stage: str) -> dict | None:
    found = sorted(run.glob(f"*-{stage}/metrics.json"))
    return json.loads(found[0].read_text()) if found else None


def seed_table(m: dict) -> str:
    domains = list(next(iter(m["eval"].values()))["by_domain_level"])
    lines = ["| model | " + " | ".join(f"{d} L1-4" for d in domains) + " |", "|---|" + "---|" * len(domains)]
    for name, ev in m["eval"].items():
        cells = ["/".join(f"{v:.0f}" for v in ev["by_domain_level"][d].values()) for d in domains]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    leads = "; ".join(
        f"{d}: +{v['lead_over_other_specialists']:.1f} over the other specialists, +{v['lead_over_base']:.1f} over the base"
        for d, v in m["specialist_lead"].items()
    )
    return "\n".join(lines) + f"\n\nSpecialist leads in their own domain (mean of levels): {leads}."


def evomerge_table(m: dict) -> str:
    means = m["test_mean_over_domains"]
    lines = ["| model | test accuracy, mean over " + ", ".join(m["domains"]) + " |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in means.items()]
    champ = m["champion"]
    return "\n".join(lines) + (
        f"\n\nChampion: `{champ['label']}` (candidate {champ['id']}, generation {champ['generation']}); "
        f"{m['evaluations']} evaluations, stopped: {m['stop_reason']}; beats every specialist: "
        f"{m['beats_every_specialist']}, beats the uniform linear merge: {m['beats_uniform_linear']}."
    )


def quietstar_table(m: dict) -> str:
    qs, plain, before = m["quietstar"], m.get("no_thoughts", {}), m["input_model"]
    rows = [
        ("model entering the stage (no training)", before["val_answer_nll"], before["test_multistep_accuracy"]),
        ("Quiet-STaR fine-tune, thinking", qs["val_answer_nll"], qs["test_multistep_accuracy"]),
        ("Quiet-STaR fine-tune, thinking off", qs["val_answer_nll_no_thinking"], qs["test_multistep_accuracy_no_thinking"]),
    ]
    if plain:
        rows.append(("same steps and data, no thoughts", plain["val_answer_nll"], plain["test_multistep_accuracy"]))
    lines = ["| model | val NLL of answer tokens | test accuracy, multi-step tasks (%) |", "|---|---|---|"]
    lines += [f"| {name} | {nll:.3f} | {100 * acc:.1f} |" for name, nll, acc in rows]
    tail = qs.get("train_tail", {})
    return "\n".join(lines) + (
        f"\n\nMean mixing weight on the post-thought prediction at the end of training: "
        f"{tail.get('mean_mix_weight', float('nan')):.4f}; items: {m['eval_items']}."
    )


def bitnet_table(m: dict) -> str:
    lines = ["| model | test accuracy (%) |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in m["accuracy"].items()]
    size = m["size"]
    return "\n".join(lines) + (
        f"\n\nPacked linear weights: {size['bits_per_weight']:.4f} bits per weight (measured from the files); "
        f"decoder linears {size['linear_shrink_ratio']:.2f}x smaller, model file {size['model_shrink_ratio']:.2f}x "
        f"smaller ({size['fp32_model_bytes']:,} -> {size['file_bytes']:,} bytes); retained accuracy "
        f"{100 * m['retained_fraction']:.1f}% of full precision; {100 * m['ternary']['zero_fraction']:.1f}% of the "
        f"ternary weights are zero; packed inference kernel: {m['kernel']}."
    )


def curriculum_table(m: dict) -> str:
    lines = [
        "| domain | frontier (baseline) | highest mastered after | mastered levels: before -> after | levels above baseline: before -> after |",
        "|---|---|---|---|---|",
    ]
    for domain, d in m["by_domain"].items():
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append(
            f"| {domain} | {m['frontier'][domain]} | {m['mastered'][domain]} | "
            f"{fmt(d['mastered_before'])} -> {fmt(d['mastered_after'])} (L{','.join(map(str, d['mastered_levels'])) or '-'}) | "
            f"{fmt(d['above_before'])} -> {fmt(d['above_after'])} (L{','.join(map(str, d['above_levels']))}) |"
        )
    return "\n".join(lines) + (
        f"\n\nDomains whose highest mastered level rose: {m['domains_improved'] or 'none'}; expected calibration error of "
        f"the self-predicted confidence {m['ece_before']:.3f} -> {m['ece_after']:.3f}; {m['levels_trained']} curriculum "
        f"levels in {m['seconds']:.0f} s; model still ternary: {m['ternary']['ternary']}."
    )


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny")
    manifest = json.loads((run / "manifest.json").read_text())
    for stage, render in [("seed", seed_table), ("evomerge", evomerge_table), ("quietstar", quietstar_table), ("bitnet", bitnet_table), ("curriculum", curriculum_table)]:
        m = _metrics(run, stage)
        if m is None:
            continue
        took = manifest["stages"].get(stage, {}).get("duration_s")
        print(f"### {stage}" + (f" ({took:.0f} s)" if took else "") + "\n")
        print(render(m) + "\n")


if __name__ == "__main__":
    main()
