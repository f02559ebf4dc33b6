"""Every accuracy table the project prints: rich tables for the console, markdown for the README.

Accuracies are percentages (0-100) everywhere, as `EvalReport` gives them; `cell` formats one value ("-" for a
missing one), so every table shows numbers the same way.
- `accuracy_table(reports)`: several models side by side, one column per (domain, level) plus each domain's mean
  (the seed, evomerge and bitnet stages).
- `accuracy_grid(by_domain_level, by_domain, levels)`: one model, one row per domain and one column per level
  (`agent-forge eval`).
- `rows_table(title, columns, rows)` / `markdown_table(columns, rows)`: any other table of already formatted
  cells (a stage's comparison; ``agent-forge report RUN --markdown` (pipeline/report.py)`).
Exercise: `python -m pytest tests/evaluation/test_table.py`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from rich.table import Table

from .report import EvalReport


def cell(value: Any, digits: int = 1) -> str:
    """A number with `digits` decimals; None and NaN as "-"; anything else as its `str`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, justify: str = "left") -> Table:
    """A rich table of already formatted cells."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same cells as a markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(reports: Mapping[str, EvalReport], title: str = "test accuracy (%)") -> Table:
    """One row per model, one column per (domain, level) plus a per-domain mean."""
    columns: list[tuple[str, int | None]] = []
    for report in reports.values():
        for domain, levels in report.by_domain_level.items():
            for level in levels:
                if (domain, level) not in columns:
                    columns.append((domain, level))
            if (domain, None) not in columns:
                columns.append((domain, None))
    columns.sort(key=lambda c: (c[0], c[1] if c[1] is not None else 99))
    table = Table(title=title)
    table.add_column("model")
    for domain, level in columns:
        table.add_column(f"{domain[:5]} L{level}" if level is not None else f"{domain[:5]} mean", justify="right")
    for name, report in reports.items():
        cells = []
        by_level, by_domain = report.by_domain_level, report.by_domain
        for domain, level in columns:
            value = by_domain.get(domain) if level is None else by_level.get(domain, {}).get(level)
            cells.append(cell(value, 0))
        table.add_row(name, *cells)
    return table


def accuracy_grid(by_domain_level: Mapping[str, Mapping[int, float]], by_domain: Mapping[str, float],
                  levels: Sequence[int]) -> Table:
    """Accuracy (%) with one row per domain and one column per level, plus the domain's overall accuracy."""
    table = Table(title="accuracy (%) by domain and level")
    table.add_column("domain")
    for level in levels:
        table.add_column(f"L{level}", justify="right")
    table.add_column("all", justify="right", style="bold")
    for domain, per_level in by_domain_level.items():
        cells = [cell(per_level.get(level), 0) for level in levels]
        table.add_row(domain, *cells, cell(by_domain.get(domain, float("nan"))))
    return table
