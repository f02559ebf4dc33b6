"""The sweep's tables (`agent-forge sweep`, `agent-forge report <name>-sweep`), from `sweep.json`'s data
(`pipeline.sweep.summarize`): the suite effects per seed and across seeds, the share of each specialist's gain the
champion keeps, each stage's own claims, then a verdict line and the command. Rendered as markdown (the README)
and as rich tables (the terminal) from the same rows.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..evaluation.table import cell, markdown_table


SWEEP_TITLE = ("stage effects over seeds: per seed the paired difference on the suite's items (points, 95% "
               "paired bootstrap interval); across seeds mean ± sd and the 95% t-interval")


def _signed_interval(v: dict | None) -> str:
    if v is None:
        return "-"
    if v.get("low") is None:  # a trajectory recorded before per-item scores: its change, no interval
        return f"{v['mean']:+.2f} (no CI)"
    return f"{v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"


def _across_cells(a: dict | None) -> list[str]:
    if not a:
        return ["-", "-"]
    if a.get("sd") is None:  # one seed: no spread to show
        return [f"{a['mean']:+.2f} (1 seed)", "-"]
    return [f"{a['mean']:+.2f} ± {a['sd']:.2f}", f"[{a['low']:+.2f}, {a['high']:+.2f}]"]


def sweep_columns(data: dict) -> list[str]:
    return ["stage", "effect", *(f"seed {k}" for k in data["seeds"]), "mean ± sd", "95% t-interval"]


def sweep_rows(data: dict) -> list[list[str]]:
    """One row of cells per stage effect in `sweep.json`'s data (`pipeline.sweep.summarize`)."""
    rows = []
    for effect in data["effects"]:
        per_seed = effect["per_seed"]
        across = _across_cells(effect.get("across"))
        if effect.get("across") and 1 < effect["across"]["n"] < len(data["seeds"]):
            across[0] += f" (n={effect['across']['n']})"  # some seeds' runs lack this stage
        rows.append([effect["stage"], effect["label"], *(_signed_interval(per_seed.get(str(k))) for k in data["seeds"]),
                     *across])
    return rows


def sweep_note(data: dict) -> str:
    threads = ", ".join(map(str, sorted({t for counts in data.get("threads", {}).values() for t in counts}))) or "?"
    return (f"Command: `{data['command']}` ({len(data['seeds'])} seeds; torch threads: {threads}). "
            f"{data['effect_definition']}")


RETAINED_TITLE = ("evomerge: the champion's share of each specialist's own-domain gain over the base (suite items of "
                  "that domain, %); a skill is kept at 70% or more")


def retained_columns(data: dict) -> list[str]:
    return ["domain", *(f"seed {k}" for k in data["seeds"]), "seeds kept"]


def retained_rows(data: dict) -> list[list[str]]:
    """One row per specialist domain (share kept per seed, seeds keeping it), then whether each seed keeps all."""
    from .sweep import KEEP_SHARE

    retained = data.get("retained") or {}
    seeds = [str(k) for k in data["seeds"] if str(k) in retained]
    domains = list(dict.fromkeys(d for k in seeds for d in retained[k]))
    if not domains:
        return []

    def kept(share) -> bool:
        return share is not None and share >= KEEP_SHARE

    rows = []
    for domain in domains:
        shares = {k: retained[k].get(domain) for k in seeds}
        rows.append([domain, *("-" if str(k) not in retained else cell(None if shares[str(k)] is None else
                                                                        100 * shares[str(k)], 0)
                              for k in data["seeds"]),
                     f"{sum(kept(v) for v in shares.values())}/{len(seeds)}"])
    every = {k: all(kept(retained[k].get(d)) for d in domains) for k in seeds}
    rows.append(["all kept", *("-" if str(k) not in retained else ("yes" if every[str(k)] else "no")
                               for k in data["seeds"]), f"{sum(every.values())}/{len(seeds)}"])
    return rows


CLAIMS_TITLE = "each stage's own headline numbers (its metrics.json), per seed; mean ± sd over seeds"


def claims_columns(data: dict) -> list[str]:
    return ["stage", "claim", *(f"seed {k}" for k in data["seeds"]), "mean ± sd", "95% t-interval"]


def claims_rows(data: dict) -> list[list[str]]:
    rows = []
    for claim in data.get("claims") or []:
        a = claim["across"]
        if a.get("sd") is None:
            spread = [f"{a['mean']:.2f} (1 seed)", "-"]
        else:
            spread = [f"{a['mean']:.2f} ± {a['sd']:.2f}", f"[{a['low']:.2f}, {a['high']:.2f}]"]
        rows.append([claim["stage"], claim["label"],
                     *(cell(claim["per_seed"].get(str(k)), 2) for k in data["seeds"]), *spread])
    return rows


def sweep_verdict(data: dict) -> str:
    """The evomerge claims over seeds in one sentence: the champion above the best specialist (paired interval
    above 0), and every skill kept; empty when the sweep has no evomerge."""
    effect = next((e for e in data["effects"] if e["label"] == "champion − best specialist"), None)
    if effect is None:
        return ""
    per_seed = effect["per_seed"]
    above = sum(1 for v in per_seed.values() if v.get("low") is not None and v["low"] > 0)
    text = f"Champion above the best specialist with its interval above 0 in {above} of {len(per_seed)} seeds"
    rows = retained_rows(data)
    if rows:
        text += f"; every specialist's own-domain gain kept (70% or more) in {rows[-1][-1].replace('/', ' of ')} seeds"
    return text + "."


def sweep_tables(data: dict) -> list[tuple[str, list[str], list[list[str]], int]]:
    """(title, columns, rows, key columns) of each table the sweep shows: the suite effects, then, when the
    sweep has them, the kept shares of each specialist's gain and each stage's own claims."""
    tables = [(SWEEP_TITLE, sweep_columns(data), sweep_rows(data), 2)]
    for title, columns, rows, keys in ((RETAINED_TITLE, retained_columns(data), retained_rows(data), 1),
                                       (CLAIMS_TITLE, claims_columns(data), claims_rows(data), 2)):
        if rows:
            tables.append((title, columns, rows, keys))
    return tables


def markdown_sweep(data: dict) -> str:
    """The sweep's tables as markdown (the README's tables of stage effects), with the verdict and command below."""
    out = "".join(f"{title}.\n\n{markdown_table(columns, rows)}\n\n" for title, columns, rows, _ in sweep_tables(data))
    verdict = sweep_verdict(data)
    return out + (f"{verdict}\n\n" if verdict else "") + f"{sweep_note(data)}\n"


def rich_sweep(data: dict) -> Iterator[Any]:
    """Renderables for a rich console: the sweep's tables (their key columns never wrap), then its command."""
    from rich.markup import escape
    from rich.text import Text

    from ..evaluation.table import FitTable

    for title, columns, rows, keys in sweep_tables(data):
        table = FitTable(title=title, key_columns=keys)
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i < keys else "right")
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        yield table
    verdict = sweep_verdict(data)
    if verdict:
        yield Text(verdict)
    yield Text(sweep_note(data))
