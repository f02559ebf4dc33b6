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


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny")
    manifest = json.loads((run / "manifest.json").read_text())
    for stage, render in [("seed", seed_table), ("evomerge", evomerge_table)]:
        m = _metrics(run, stage)
        if m is None:
            continue
        took = manifest["stages"].get(stage, {}).get("duration_s")
        print(f"### {stage}" + (f" ({took:.0f} s)" if took else "") + "\n")
        print(render(m) + "\n")


if __name__ == "__main__":
    main()
